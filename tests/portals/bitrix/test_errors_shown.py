"""A stored error as a person reads it (portals.bitrix.errors.explain): what happened and what
to do in the reader's language, Bitrix24's own words kept as they came, labelled as theirs."""

from django.utils import translation

from portals.bitrix.errors import classify, explain, own


def test_a_bitrix_answer_is_explained_in_both_languages():
    stored = classify("NOT_INSTALLED", "Application not installed", 400).message()
    assert stored.startswith("Bitrix24 answered NOT_INSTALLED (Application not installed).")
    with translation.override("ru"):  # stored in English whatever the language at the time
        assert classify("NOT_INSTALLED", "x", 400).message().endswith("then re-connect.")
        ru = explain("NOT_INSTALLED", stored)
    assert ru.said == "Битрикс24 ответил NOT_INSTALLED."
    assert ru.quote == "Application not installed"  # Bitrix24's words, as they came
    assert ru.advice.startswith("Установите приложение на портал заново")
    with translation.override("ru"):
        assert "Слова Битрикс24: «Application not installed»." in ru.text()
    with translation.override("en"):
        en = explain("NOT_INSTALLED", stored)
        assert en.text() == (
            "Bitrix24 answered NOT_INSTALLED. Bitrix24's words: “Application not installed”. "
            "Install the application on the portal again, then re-connect."
        )


def test_a_description_with_brackets_and_our_own_codes():
    stored = classify("invalid_grant", "code (abc). expired", 400).message()
    assert explain("invalid_grant", stored).quote == "code (abc). expired"
    timeout = own("timeout", "The authorization server did not answer in time.").message()
    with translation.override("ru"):
        ru = explain("timeout", timeout)
    assert (ru.said, ru.quote) == ("Битрикс24 не ответил вовремя.", "")
    assert ru.advice.startswith("Пока ничего")
    with translation.override("en"):  # in English our own words say more: kept
        assert (
            explain("timeout", timeout).said == "The authorization server did not answer in time."
        )


def test_a_message_that_is_not_a_bitrix_answer_is_kept():
    setting = "BITRIX_AUTH_SERVERS does not allow oauth.example.com."
    assert explain("configuration", setting).text() == setting
    assert explain("", "").text() == ""
