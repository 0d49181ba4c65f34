"""The REST client (portals.rest) against the fake portal's REST API, over real HTTP."""

import json
import logging
import time
import traceback

import pytest

from notifications.models import Incident
from portals.models import Portal, RefreshAttempt, Token, TokenStatus
from portals.rest import Bitrix24, RestError

pytestmark = pytest.mark.django_db


def test_it_calls_a_method_with_the_token_in_a_json_post_body(fake_bitrix, rest_token):
    user = Bitrix24("token").call("user.current")
    assert user["ID"] == "1"
    [call] = fake_bitrix.rest_calls
    assert (call.http_method, call.content_type, call.auth_via) == (
        "POST",
        "application/json",
        "auth",
    )
    assert call.target == "/rest/user.current"  # nothing in the URL but the method
    assert rest_token.client_endpoint == f"http://{call.host}/rest/"


def test_call_returns_the_result_and_request_the_envelope(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 3)
    b24 = Bitrix24("token")
    assert b24.call("crm.lead.get", {"id": 2})["TITLE"] == "Lead 2"
    envelope = b24.request("crm.lead.list", {"select": ["ID"]})
    assert envelope["result"] == [{"ID": "1"}, {"ID": "2"}, {"ID": "3"}]
    assert envelope["total"] == 3 and "next" not in envelope and "time" in envelope


def test_a_token_expiring_mid_sequence_is_refreshed_exactly_once(fake_bitrix, rest_token):
    b24 = Bitrix24("token")
    for _ in range(3):
        b24.call("user.current")
    fake_bitrix.advance(3601)  # the portal now sees the stored access token as expired
    for _ in range(3):
        assert b24.call("user.current")["ID"] == "1"
    assert fake_bitrix.count("refresh_token") == 1
    assert fake_bitrix.rest_count(error="expired_token") == 1
    assert fake_bitrix.rest_count("user.current") == 7
    attempt = RefreshAttempt.objects.get(kind=RefreshAttempt.Kind.ON_DEMAND)
    assert attempt.outcome == RefreshAttempt.Outcome.SUCCESS


def test_an_invalid_token_that_a_refresh_cures_is_retried(fake_bitrix, rest_token):
    fake_bitrix.rest_fail_next("invalid_token")
    assert Bitrix24("token").call("user.current")["ID"] == "1"
    assert fake_bitrix.count("refresh_token") == 1
    rest_token.refresh_from_db()
    assert rest_token.status == TokenStatus.ACTIVE


@pytest.mark.parametrize("code", ["invalid_token", "NO_AUTH_FOUND"])
def test_a_token_still_refused_after_a_refresh_is_marked_and_opens_an_incident(
    fake_bitrix, rest_token, code, django_capture_on_commit_callbacks
):
    fake_bitrix.rest_fail_next(code, count=2)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == code and caught.value.permanent and caught.value.status == 401
    assert fake_bitrix.count("refresh_token") == 1
    token = Token.objects.get(pk=rest_token.pk)
    assert token.status == TokenStatus.NEEDS_REAUTH and token.last_error_code == code
    failed = RefreshAttempt.objects.get(outcome=RefreshAttempt.Outcome.PERMANENT_ERROR)
    assert failed.error_code == code
    incident = Incident.objects.get(token=token)
    assert incident.permanent


def test_a_second_expired_token_is_raised_without_another_refresh(fake_bitrix, rest_token):
    fake_bitrix.rest_fail_next("expired_token", count=2)
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == "expired_token" and not caught.value.permanent
    assert fake_bitrix.count("refresh_token") == 1
    assert Token.objects.get(pk=rest_token.pk).status == TokenStatus.ACTIVE


@pytest.mark.parametrize(
    ("code", "count"), [("QUERY_LIMIT_EXCEEDED", 2), ("OPERATION_TIME_LIMIT", 1)]
)
def test_rate_answers_are_retried_and_never_reach_the_caller(fake_bitrix, rest_token, code, count):
    fake_bitrix.rest_fail_next(code, count=count, method="user.current")
    assert Bitrix24("token").call("user.current")["ID"] == "1"
    assert fake_bitrix.rest_count("user.current", error=code) == count
    assert fake_bitrix.rest_count("user.current") == count + 1


def test_rate_answers_reach_the_caller_when_the_deadline_runs_out(fake_bitrix, rest_token):
    fake_bitrix.rest_fail_next("QUERY_LIMIT_EXCEEDED", count=100)
    began = time.monotonic()
    with pytest.raises(RestError) as caught:
        Bitrix24("token", deadline=1.0).call("user.current")
    assert time.monotonic() - began < 3
    assert caught.value.code == "QUERY_LIMIT_EXCEEDED" and not caught.value.permanent
    assert caught.value.status == 503


@pytest.mark.parametrize(
    ("code", "permanent", "status"),
    [
        ("insufficient_scope", True, 403),
        ("ERROR_METHOD_NOT_FOUND", True, 404),
        ("PORTAL_DELETED", True, 500),
        ("OVERLOAD_LIMIT", True, 503),
        ("INTERNAL_SERVER_ERROR", False, 500),
    ],
)
def test_other_errors_are_classified_and_leave_the_token_alone(
    fake_bitrix, rest_token, code, permanent, status
):
    fake_bitrix.rest_fail_next(code)
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    err = caught.value
    assert (err.code, err.permanent, err.status) == (code, permanent, status)
    assert err.description and "Bitrix24 answered" in str(err)
    assert fake_bitrix.rest_count() == 1  # not retried
    assert fake_bitrix.count("refresh_token") == 0
    assert Token.objects.get(pk=rest_token.pk).status == TokenStatus.ACTIVE


def test_an_unknown_method_is_a_permanent_error(fake_bitrix, rest_token):
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("no.such.method")
    assert caught.value.code == "ERROR_METHOD_NOT_FOUND" and caught.value.permanent


def test_no_access_token_in_errors_tracebacks_or_logs(fake_bitrix, rest_token, caplog):
    caplog.set_level(logging.DEBUG)
    fake_bitrix.rest_fail_next("QUERY_LIMIT_EXCEEDED", count=1)
    fake_bitrix.rest_fail_next("invalid_token", count=2)
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    secrets = [rest_token.access_token, Token.objects.get(pk=rest_token.pk).access_token]
    shown = [str(caught.value), repr(caught.value), caplog.text]
    shown.append("".join(traceback.format_exception(caught.value)))
    for secret in secrets:
        assert not any(secret in text for text in shown)


def test_an_unreachable_portal_is_a_transient_error(fake_bitrix, rest_token):
    Token.objects.filter(pk=rest_token.pk).update(client_endpoint="http://127.0.0.1:9/rest/")
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == "connection_error" and not caught.value.permanent


def test_a_plain_http_portal_is_refused_outside_tests(settings, fake_bitrix, rest_token):
    settings.BITRIX_ALLOW_HTTP = False
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == "invalid_endpoint"
    assert fake_bitrix.rest_count() == 0


# --- batch ------------------------------------------------------------------------------------


def test_a_batch_of_120_commands_takes_3_requests_and_merges_them(
    fake_bitrix, rest_token, portal_host
):
    fake_bitrix.add_leads(portal_host, 120)
    commands = {f"lead{i}": ("crm.lead.get", {"id": i}) for i in range(1, 121)}
    result = Bitrix24("token").batch(commands)
    assert fake_bitrix.rest_count("batch") == 3
    assert [call.commands for call in fake_bitrix.rest_calls] == [50, 50, 20]
    assert list(result.results) == list(commands)
    assert result.results["lead120"]["TITLE"] == "Lead 120"
    assert result.errors == {}


def test_batch_keeps_each_commands_error_and_list_totals(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 60)
    result = Bitrix24("token").batch(
        {
            "me": ("user.current", {}),
            "missing": ("crm.lead.get", {"id": 999}),
            "leads": ("crm.lead.list", {"select": ["ID"], "filter": {">ID": 5}}),
        }
    )
    assert result.results["me"]["ID"] == "1"
    assert set(result.errors) == {"missing"}
    assert result.errors["missing"].code == "NOT_FOUND"
    assert result.errors["missing"].description == "Not found"
    assert len(result.results["leads"]) == 50 and result.results["leads"][0] == {"ID": "6"}
    assert result.totals == {"leads": 55} and result.next == {"leads": 50}


def test_halt_stops_at_the_first_request_with_a_failed_command(
    fake_bitrix, rest_token, portal_host
):
    fake_bitrix.add_leads(portal_host, 10)
    commands = {i: ("crm.lead.get", {"id": i}) for i in range(1, 121)}
    commands[20] = ("crm.lead.get", {"id": 999})
    result = Bitrix24("token").batch(commands, halt=True)
    assert fake_bitrix.rest_count("batch") == 1
    assert list(result.errors) == [11]  # the first failure; Bitrix stopped there
    assert list(result.results) == list(range(1, 11))


def test_a_reference_to_a_command_in_another_request_is_refused_before_sending(
    fake_bitrix, rest_token
):
    commands = {f"c{i}": ("user.current", {}) for i in range(60)}
    commands["late"] = ("crm.lead.get", {"id": "$result[c0][ID]"})
    with pytest.raises(ValueError, match=r"\$result\[c0\]"):
        Bitrix24("token").batch(commands)
    assert fake_bitrix.rest_count() == 0


def test_a_reference_within_one_request_is_substituted(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 3)
    result = Bitrix24("token").batch(
        {"me": ("user.current", {}), "lead": ("crm.lead.get", {"id": "$result[me][ID]"})}
    )
    assert result.results["lead"]["ID"] == "1"


# --- paging -----------------------------------------------------------------------------------


def test_120_leads_come_in_3_pages(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 120)
    leads = list(Bitrix24("token").iterate("crm.lead.list", {"select": ["ID", "TITLE"]}))
    assert [lead["ID"] for lead in leads] == [str(i) for i in range(1, 121)]
    calls = fake_bitrix.rest_calls
    assert [call.args.get("start") for call in calls] == [0, 50, 100]


def test_fast_paging_goes_by_id_without_counting(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 120)
    leads = list(Bitrix24("token").iterate("crm.lead.list", {"select": ["TITLE"]}, fast=True))
    assert [lead["ID"] for lead in leads] == [str(i) for i in range(1, 121)]
    calls = fake_bitrix.rest_calls
    assert [call.args["start"] for call in calls] == [-1, -1, -1]
    assert [call.args["filter"][">ID"] for call in calls] == [0, "50", "100"]


def test_paging_stops_when_next_is_missing(fake_bitrix, rest_token, portal_host):
    fake_bitrix.add_leads(portal_host, 50)
    assert len(list(Bitrix24("token").iterate("crm.lead.list"))) == 50
    assert fake_bitrix.rest_count("crm.lead.list") == 1


# --- a renamed portal -------------------------------------------------------------------------


def test_a_confirmed_rename_is_followed_as_a_post_and_stored(fake_bitrix, rest_token, portal_host):
    new_host = fake_bitrix.extra_host()
    fake_bitrix.rename_portal(portal_host, new_host)
    lead_id = Bitrix24("token").call("crm.lead.add", {"fields": {"TITLE": "Moved"}})
    old, new = fake_bitrix.rest_calls
    assert (old.host, old.status) == (portal_host, 302)
    assert (new.host, new.http_method, new.auth_via, new.status) == (new_host, "POST", "auth", 200)
    assert new.args["fields"] == {"TITLE": "Moved"}
    portal = Portal.objects.get(pk=rest_token.portal_id)
    assert portal.domain == new_host and portal.member_id == rest_token.portal.member_id
    assert Token.objects.get(pk=rest_token.pk).client_endpoint == f"http://{new_host}/rest/"
    assert Bitrix24("token").call("crm.lead.get", {"id": lead_id})["TITLE"] == "Moved"
    assert fake_bitrix.rest_count(host=portal_host) == 1  # later calls go straight there


def test_an_unconfirmed_redirect_is_refused_and_nothing_is_sent_there(
    fake_bitrix, rest_token, portal_host
):
    elsewhere = fake_bitrix.extra_host()
    fake_bitrix.redirect_portal(portal_host, elsewhere)
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == "portal_moved" and caught.value.permanent
    assert elsewhere in str(caught.value)
    assert fake_bitrix.rest_count(host=elsewhere) == 0
    assert Portal.objects.get(pk=rest_token.portal_id).domain == portal_host


def test_a_rename_is_refused_when_the_authorization_server_is_not_allowed(
    settings, fake_bitrix, rest_token, portal_host
):
    new_host = fake_bitrix.extra_host()
    fake_bitrix.rename_portal(portal_host, new_host)
    settings.BITRIX_AUTH_SERVERS = ["https://oauth.bitrix.info"]
    with pytest.raises(RestError) as caught:
        Bitrix24("token").call("user.current")
    assert caught.value.code == "portal_moved" and "BITRIX_AUTH_SERVERS" in str(caught.value)
    assert fake_bitrix.rest_count(host=new_host) == 0
    assert Portal.objects.get(pk=rest_token.portal_id).domain == portal_host


def test_every_call_is_counted_in_the_metrics(fake_bitrix, rest_token):
    from ops.models import Counter

    def calls(outcome: str) -> float:
        labels = json.dumps({"outcome": outcome}, sort_keys=True)
        row = Counter.objects.filter(name="b24keeper_rest_calls_total", labels=labels).first()
        return row.value if row else 0.0

    Bitrix24("token").call("user.current")
    with pytest.raises(RestError):
        Bitrix24("token").call("no.such.method")
    assert calls("success") == 1 and calls("permanent_error") == 1
