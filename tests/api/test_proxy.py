"""The REST proxy, SITE_URL/rest/<token id>/<api key>/<method>: the fake portal behind it is
reached over real HTTP through the production code path."""

import json
import logging
import time

import pytest

from api import keys
from api.models import ApiKey
from core.error_reports import mask_urls
from core.logging import RedactSecretsFilter, redact
from portals.models import Portal, Token, TokenStatus
from tests.conftest import connect
from tests.processes import wait_until

pytestmark = pytest.mark.django_db


@pytest.fixture
def hook(rest_token) -> str:
    """The webhook URL path of a proxy key for the token."""
    _, key = keys.create_key("proxy", ["token"], scopes="proxy")
    return f"/rest/{rest_token.pk}/{key}/"


def body(response) -> dict:
    return json.loads(response.content)


def test_a_call_goes_through_with_the_token_added_and_the_answer_unchanged(
    client, fake_bitrix, hook, rest_token
):
    response = client.get(hook + "user.current.json")
    assert response.status_code == 200 and body(response)["result"]["ID"] == "1"
    [call] = fake_bitrix.rest_calls
    assert call.method == "user.current" and call.auth_via == "auth"
    assert rest_token.access_token not in response.content.decode()


@pytest.mark.parametrize("shape", ["json", "form", "query"])
def test_get_and_post_with_json_form_or_query_parameters(
    client, fake_bitrix, hook, portal_host, shape
):
    fake_bitrix.add_leads(portal_host, 3)
    if shape == "json":
        response = client.post(hook + "crm.lead.get", {"id": 2}, content_type="application/json")
    elif shape == "form":
        response = client.post(
            hook + "crm.lead.get", "id=2", content_type="application/x-www-form-urlencoded"
        )
    else:
        response = client.get(hook + "crm.lead.get", {"id": 2})
    assert response.status_code == 200 and body(response)["result"]["TITLE"] == "Lead 2"


def test_a_batch_and_list_paging_pass_through(client, fake_bitrix, hook, portal_host):
    fake_bitrix.add_leads(portal_host, 60)
    page = body(client.post(hook + "crm.lead.list", {"start": 50}, content_type="application/json"))
    assert len(page["result"]) == 10 and page["total"] == 60
    cmd = {"a": "crm.lead.get?id=1", "b": "user.current"}
    batch = client.post(hook + "batch", {"halt": 0, "cmd": cmd}, content_type="application/json")
    assert body(batch)["result"]["result"]["a"]["ID"] == "1"


def test_the_portals_own_errors_come_back_unchanged(client, fake_bitrix, hook):
    fake_bitrix.rest_fail_next("ERROR_METHOD_NOT_FOUND")
    response = client.get(hook + "crm.nothing")
    assert response.status_code == 404 and body(response)["error"] == "ERROR_METHOD_NOT_FOUND"


def test_an_expired_token_is_renewed_once_through_the_bound(client, fake_bitrix, hook):
    fake_bitrix.refuse_access(Token.objects.get().access_token)
    assert client.get(hook + "user.current").status_code == 200
    assert fake_bitrix.count("refresh_token") == 1
    assert Token.objects.get().attempts.filter(kind="renew").count() == 1
    # A refusal that persists: one more renewal is over the bound, so the portal's own
    # answer reaches the caller, without another refresh.
    fake_bitrix.refuse_every_access()
    response = client.get(hook + "user.current")
    assert response.status_code == 401 and body(response)["error"] == "expired_token"
    assert fake_bitrix.count("refresh_token") == 1


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/rest/{id}/b24k_{wrong}/user.current", 401, "invalid_api_key"),
        ("/rest/999999/{key}/user.current", 404, "token_not_found"),
        ("/rest/{id}/{key}/no/such", 404, None),
        ("/rest/{id}/{key}/bad-method!", 400, "invalid_method"),
    ],
)
def test_our_own_errors_use_bitrix24s_shape(client, rest_token, path, status, code):
    _, key = keys.create_key("proxy", ["token"], scopes="proxy")
    response = client.get(path.format(id=rest_token.pk, key=key, wrong="x" * 43))
    assert response.status_code == status
    if code:
        answer = body(response)
        assert answer["error"] == code and answer["error_description"].endswith(".")


def test_a_token_only_key_and_a_token_outside_the_key_are_refused(client, fake_bitrix, rest_token):
    other = connect(fake_bitrix, reference="other", portal="other.bitrix24.com")
    _, token_key = keys.create_key("reader", ["token"])
    refused = client.get(f"/rest/{rest_token.pk}/{token_key}/user.current")
    assert refused.status_code == 403 and body(refused)["error"] == "scope_not_allowed"
    _, proxy_key = keys.create_key("proxy", ["token"], scopes="proxy")
    outside = client.get(f"/rest/{other.pk}/{proxy_key}/user.current")
    assert outside.status_code == 404 and body(outside)["error"] == "token_not_found"


@pytest.mark.parametrize(
    "status", [TokenStatus.NEEDS_REAUTH, TokenStatus.DISABLED, TokenStatus.UNINSTALLED]
)
def test_an_unavailable_token_is_403_with_the_reason(client, hook, status):
    Token.objects.update(status=status)
    response = client.get(hook + "user.current")
    assert response.status_code == 403 and body(response)["error"] == "token_unavailable"
    assert "Token “token”" in body(response)["error_description"]


def test_method_patterns_check_the_method_and_every_batch_command(client, fake_bitrix, rest_token):
    _, key = keys.create_key("leads", ["token"], scopes="proxy", methods="crm.lead.*, USER.current")
    hook = f"/rest/{rest_token.pk}/{key}/"
    assert client.get(hook + "CRM.LEAD.LIST").status_code == 200
    assert client.get(hook + "user.current").status_code == 200
    refused = client.get(hook + "crm.deal.list")
    assert refused.status_code == 403 and body(refused)["error"] == "method_not_allowed"
    cmd = {"a": "crm.lead.list", "b": "crm.deal.list?id=1"}
    in_batch = client.post(hook + "batch", {"cmd": cmd}, content_type="application/json")
    assert in_batch.status_code == 403 and "crm.deal.list" in body(in_batch)["error_description"]
    form = "cmd[a]=crm.lead.list&cmd[b]=" + "crm.deal.get%3Fid%3D1"
    in_form = client.post(hook + "batch", form, content_type="application/x-www-form-urlencoded")
    assert in_form.status_code == 403
    assert fake_bitrix.rest_count("crm.deal.list") == fake_bitrix.rest_count("batch") == 0


def test_event_and_app_methods_need_a_pattern_naming_them(client, fake_bitrix, rest_token):
    _, any_key = keys.create_key("any", ["token"], scopes="proxy")
    _, star = keys.create_key("star", ["token"], scopes="proxy", methods="*")
    _, events = keys.create_key("events", ["token"], scopes="proxy", methods="event.*")
    for key in (any_key, star):
        hook = f"/rest/{rest_token.pk}/{key}/"
        assert client.get(hook + "event.unbind").status_code == 403
        assert client.get(hook + "app.info").status_code == 403
        cmd = {"a": "user.current", "b": "event.unbind?event=ONAPPUNINSTALL"}
        batch = client.post(hook + "batch", {"cmd": cmd}, content_type="application/json")
        assert batch.status_code == 403
    assert client.get(f"/rest/{rest_token.pk}/{events}/event.get").status_code == 200
    assert fake_bitrix.rest_count("event.unbind") == 0


def test_no_turn_within_proxy_max_wait_is_503_query_limit_exceeded(
    settings, client, fake_bitrix, hook
):
    settings.PROXY_MAX_WAIT = 0
    Portal.objects.update(rest_rate=0.01, rest_burst=3)  # a usable burst of one request
    assert client.get(hook + "user.current").status_code == 200
    response = client.get(hook + "user.current")
    assert response.status_code == 503 and body(response)["error"] == "QUERY_LIMIT_EXCEEDED"
    assert fake_bitrix.rest_count("user.current") == 1  # the portal never had to refuse


def test_a_key_over_its_rate_gets_429(client, rest_token):
    _, key = keys.create_key("slow", ["token"], scopes="proxy", rate_per_minute=1)
    assert client.get(f"/rest/{rest_token.pk}/{key}/user.current").status_code == 200
    response = client.get(f"/rest/{rest_token.pk}/{key}/user.current")
    assert response.status_code == 429 and int(response["Retry-After"]) >= 1


def test_the_key_in_the_path_is_redacted_from_logs_and_error_reports(
    client, hook, caplog, settings
):
    caplog.set_level(logging.DEBUG)
    key = hook.split("/")[3]
    client.get(hook.replace("/rest/", "/rest/") + "bad-method!")
    client.get(hook + "user.current")
    assert key not in caplog.text
    line = f"GET {hook}user.current HTTP/1.1"
    assert key not in redact(line) and key not in mask_urls(f"Request URL: http://x{hook}user")
    # What Django itself logs of a refused request passes the handlers' filter redacted.
    record = logging.LogRecord(
        "django.request", logging.WARNING, __file__, 1, "Bad Request: %s", (hook + "x!",), None
    )
    RedactSecretsFilter().filter(record)
    assert key not in record.getMessage() and "/rest/" in record.getMessage()
    assert ApiKey.objects.get().last_used_at is not None


def test_a_confirmed_rename_is_followed_and_stored(client, fake_bitrix, hook, portal_host):
    new_host = fake_bitrix.extra_host()
    fake_bitrix.rename_portal(portal_host, new_host)
    response = client.post(
        hook + "crm.lead.add", {"fields": {"TITLE": "Moved"}}, content_type="application/json"
    )
    assert response.status_code == 200
    old, new = fake_bitrix.rest_calls
    assert (old.host, old.status) == (portal_host, 302)
    assert (new.host, new.auth_via, new.status) == (new_host, "auth", 200)
    assert Token.objects.get().client_endpoint == f"http://{new_host}/rest/"


def test_an_unconfirmed_redirect_is_refused_in_bitrix24s_shape(
    client, fake_bitrix, hook, portal_host
):
    fake_bitrix.redirect_portal(portal_host, fake_bitrix.extra_host())
    response = client.get(hook + "user.current")
    assert response.status_code == 409 and body(response)["error"] == "portal_moved"
    assert fake_bitrix.rest_count("user.current") == 1  # nothing sent to the other host


def test_a_token_renewed_elsewhere_costs_one_refused_call_and_no_refresh(client, fake_bitrix, hook):
    from portals.tokens import refresh

    assert client.get(hook + "user.current").status_code == 200  # its credential now cached
    refresh("token")  # elsewhere: strict rotation kills the access token the proxy holds
    assert client.get(hook + "user.current").status_code == 200
    assert fake_bitrix.count("refresh_token") == 1  # only the one above
    assert fake_bitrix.rest_count("user.current", error="expired_token") <= 1


def test_a_disabled_token_stops_within_a_second(client, hook):
    assert client.get(hook + "user.current").status_code == 200
    Token.objects.update(status=TokenStatus.DISABLED)
    disabled_at = time.monotonic()
    wait_until(lambda: client.get(hook + "user.current").status_code == 403, 5, "the 403")
    assert time.monotonic() - disabled_at <= 1.5


def test_a_batch_inside_a_batch_is_refused(client, fake_bitrix, hook):
    cmd = {"a": "batch?cmd[x]=event.unbind"}
    response = client.post(hook + "batch", {"cmd": cmd}, content_type="application/json")
    assert response.status_code == 403 and fake_bitrix.rest_count("batch") == 0


def test_other_http_methods_and_bodies_are_refused_in_bitrix24s_shape(client, hook):
    put = client.put(hook + "user.current")
    assert put.status_code == 405 and body(put)["error"] == "http_method_not_allowed"
    multipart = client.post(hook + "user.current", {"file": "x"})  # the test client's default
    assert multipart.status_code == 400 and body(multipart)["error"] == "invalid_request"
