"""SMS text in the GSM-7 alphabet, and what it costs.

The GSM 03.38 basic set plus its extension table: an extension character (`^{}\\[~]|€`) costs
two septets (an escape and the character) but keeps the message GSM-7. One character outside
them flips the whole SMS to UCS-2: 70 characters per part instead of 160, so a one-part alert
silently costs three parts. A single part holds 160 septets; a concatenated message holds 153
per part, since each part carries a header (docs/notification-providers.md §0).
"""

import math
import re
import unicodedata

_GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("^{}\\[~]|€")
GSM7_CHARACTERS = frozenset(_GSM7_BASIC) | GSM7_EXTENSION
SINGLE_PART = 160  # septets
PER_PART = 153  # septets of each part of a concatenated message

_LOOKALIKES = {
    **dict.fromkeys("‘’‚‛′`´", "'"),
    **dict.fromkeys("“”„‟″«»", '"'),
    **dict.fromkeys("‐‑‒–—―−", "-"),
    "…": "...",
    "•": "*",
    "·": ".",
    "№": "No",
    "\t": " ",
    "©": "(c)",
    "®": "(R)",
    "™": "TM",
    "×": "x",
    # Latin letters that Unicode does not decompose into a base letter and a mark.
    **{"ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "œ": "oe", "Œ": "OE", "ı": "i", "ŀ": "l"},
}


def _table(letters: str, latin: str) -> dict[str, str]:
    return dict(zip(letters, latin.split(), strict=True))


# Lower-case letter -> Latin ("-" for a sign that has no sound of its own). Upper case is
# looked up lower-cased and capitalised. Scripts without a letter-by-letter Latin form (Han,
# Arabic, Hebrew, ...) are not here: messages.py falls back to a login or an address there.
_TRANSLITERATION = {
    **_table(
        "абвгдеёжзийклмнопрстуфхцчшщъыьэюяіїєґў",
        "a b v g d e e zh z i y k l m n o p r s t u f kh ts ch sh shch - y - e yu ya i yi ye g u",
    ),
    # Greek (ELOT 743, simplified); accented letters are decomposed before the lookup.
    **_table(
        "αβγδεζηθικλμνξοπρσςτυφχψω",
        "a v g d e z i th i k l m n x o p r s s t y f ch ps o",
    ),
    # Georgian (the 2002 national system, without apostrophes).
    **_table(
        "აბგდევზთიკლმნოპჟრსტუფქღყშჩცძწჭხჯჰ",
        "a b g d e v z t i k l m n o p zh r s t u p k gh q sh ch ts dz ts ch kh j h",
    ),
    # Armenian.
    **_table(
        "աբգդեզէըթժիլխծկհձղճմյնշոչպջռսվտրցւփքօֆ",
        "a b g d e z e y t zh i l kh ts k h dz gh ch m y n sh o ch p j r s v t r ts w p k o f",
    ),
    "և": "ev",
}
# Invisible or pictorial: emoji, variation selectors, zero-width joiners, control characters.
_DROPPED_CATEGORIES = frozenset({"Mn", "Me", "Cf", "Cc", "Cs", "Co", "Cn", "So", "Sk"})
# A run of Greek letters is transliterated as a whole when any of them is outside GSM-7, so a
# name never comes out half Greek capitals, half Latin ("Γiorgos").
_GREEK_WORD = re.compile(r"[\u0370-\u03ff\u1f00-\u1fff]+")


def _transliterate(char: str) -> str | None:
    # The letter itself first ("й" is its own letter), then without its accent ("ώ" -> "ω").
    latin = _TRANSLITERATION.get(char.lower())
    if latin is None:
        latin = _TRANSLITERATION.get(unicodedata.normalize("NFD", char)[0].lower())
    if latin is None:
        return None
    latin = latin.strip("-")
    return latin.capitalize() if char.isupper() else latin


def _gsm7_char(char: str) -> str:
    if char in GSM7_CHARACTERS:
        return char
    if char in _LOOKALIKES:
        return _LOOKALIKES[char]
    latin = _transliterate(char)
    if latin is not None:
        return latin
    category = unicodedata.category(char)
    if category == "Zs":  # NBSP, thin and narrow spaces
        return " "
    if category in ("Zl", "Zp"):
        return "\n"
    if category in _DROPPED_CATEGORIES:
        return ""
    # Accented letters outside GSM-7 (ç, ő, ā): keep the base letter.
    base = "".join(c for c in unicodedata.normalize("NFKD", char) if c in GSM7_CHARACTERS)
    return base or "?"


def _greek_word(match: re.Match[str]) -> str:
    word = match.group(0)
    if all(char in GSM7_CHARACTERS for char in word):
        return word
    bare = "".join(c for c in unicodedata.normalize("NFD", word) if not unicodedata.combining(c))
    for greek, latin in (("ου", "ou"), ("Ου", "Ou"), ("ΟΥ", "OU")):  # one sound, one vowel
        bare = bare.replace(greek, latin)
    return "".join(_transliterate(char) or _gsm7_char(char) for char in bare)


def gsm7_safe(text: str) -> str:
    """Text that fits the GSM-7 alphabet, so an SMS never flips to UCS-2. Curly quotes, dashes
    and special spaces become ASCII; Cyrillic, Greek, Georgian and Armenian are
    transliterated; emoji are dropped; a letter with no Latin form becomes "?"."""
    text = _GREEK_WORD.sub(_greek_word, text)
    return "".join(_gsm7_char(char) for char in text)


def is_clean(text: str) -> bool:
    """True when gsm7_safe() loses nothing that matters: no letter became "?"."""
    return "?" not in gsm7_safe(text.replace("?", ""))


def septets(text: str) -> int:
    """The length of GSM-7 text as the network counts it: extension characters take two."""
    return sum(2 if char in GSM7_EXTENSION else 1 for char in text)


def sms_parts(text: str) -> int:
    """How many SMS parts GSM-7 text costs."""
    length = septets(text)
    return 1 if length <= SINGLE_PART else math.ceil(length / PER_PART)


def fit_septets(text: str, limit: int, tail: str = "...") -> str:
    """Cut GSM-7 text to at most `limit` septets, ending with `tail` when cut."""
    if septets(text) <= limit:
        return text
    room = limit - septets(tail)
    kept, used = [], 0
    for char in text:
        used += septets(char)
        if used > room:
            break
        kept.append(char)
    return "".join(kept).rstrip() + tail
