"""The token service owns every state change: the pair first, staff changes that never undo a
refresh, incidents resolved through one path, claims always released, and configuration
errors (an unreadable secret, a server outside BITRIX_AUTH_SERVERS) with a status and an
incident instead of an exception out of the task."""

from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.core.checks import run_checks
from django.urls import reverse
from django.utils import timezone

from notifications.models import Incident
from portals.bitrix.errors import PermanentOAuthError, TransientOAuthError
from portals.models import AppCredentials, RefreshAttempt, Token, TokenStatus
from portals.tokens import TokenConfigurationError, get_access_token, refresh, state
from portals.tokens.sweep import refresh_if_due
from tests.conftest import CLIENT_ID, connect, run_due

pytestmark = pytest.mark.django_db
CHANGE = "admin:portals_token_change"
CHANGELIST = "admin:portals_token_changelist"


def chain_head(fake, token: Token) -> str:
    return fake.current_refresh_token(token.portal.member_id, CLIENT_ID)


def open_incident(token: Token) -> Incident | None:
    return Incident.objects.filter(token=token, resolved_at=None).first()


# --- 2: nothing between the answer and the store can lose the pair ---------------------------
def test_a_huge_keepalive_from_an_old_row_cannot_lose_a_rotated_pair(fake_bitrix, token):
    AppCredentials.objects.update(refresh_policy="before_expiry", keepalive_days=3_000_000)
    refresh("token")
    token.refresh_from_db()
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert token.next_refresh_at <= token.expires_at


def test_connect_with_a_huge_keepalive_stores_the_token(fake_bitrix, token):
    AppCredentials.objects.update(refresh_policy="before_expiry", keepalive_days=3_000_000)
    again = connect(fake_bitrix)
    assert again.status == TokenStatus.ACTIVE and again.refresh_token == chain_head(
        fake_bitrix, again
    )


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("refresh_interval_minutes", 0, "1 to 55"),
        ("refresh_interval_minutes", 56, "1–55"),
        ("refresh_before_expiry_minutes", 60, "fewer than 60"),
        ("keepalive_days", 3_000_000, "29 days"),
        ("keepalive_days", 0, "at least 1 day"),
    ],
)
def test_the_app_form_bounds_every_policy_field(admin_client, token, field, value, says):
    app = token.app
    data = {
        "name": app.name,
        "client_id": app.client_id,
        "scope": app.scope,
        "refresh_policy": "before_expiry",
        "refresh_interval_minutes": 25,
        "refresh_before_expiry_minutes": 10,
        "keepalive_days": 7,
        field: value,
    }
    url = reverse("admin:portals_appcredentials_change", args=[app.pk])
    page = admin_client.post(url, data).content.decode()
    assert says in page
    app.refresh_from_db()
    assert getattr(app, field) != value


# --- 3: the admin form writes only what staff own ----------------------------------------------
def test_saving_a_token_in_the_admin_never_writes_version_or_claims(admin_client, token):
    claim = timezone.now()
    Token.objects.filter(pk=token.pk).update(
        version=7, refresh_started_at=claim, claimed_until=claim
    )
    form = {
        "reference": "renamed",
        "owner": "",
        "notes": "the CRM integration",
        "version": 1,
        "refresh_started_at": "",
        "claimed_until": "",
        "status": "disabled",
    }
    response = admin_client.post(reverse(CHANGE, args=[token.pk]), form)
    assert response.status_code == 302
    token.refresh_from_db()
    assert (token.reference, token.notes) == ("renamed", "the CRM integration")
    assert token.version == 7 and token.refresh_started_at == claim
    assert token.claimed_until == claim and token.status == TokenStatus.ACTIVE


def test_the_token_form_offers_only_reference_owner_and_notes(admin_client, token):
    form = admin_client.get(reverse(CHANGE, args=[token.pk])).context["adminform"].form
    assert set(form.fields) == {"reference", "owner", "notes"}


# --- 4: a staff status survives a refresh in flight -------------------------------------------
@pytest.mark.django_db(transaction=True)  # staff act from another thread, on committed rows
def test_disable_during_a_refresh_stays_and_the_pair_is_still_stored(fake_bitrix):
    token = connect(fake_bitrix)
    fake_bitrix.after_grant = lambda params: state.disable([token.pk])
    refresh("token")
    token.refresh_from_db()
    assert token.status == TokenStatus.DISABLED
    assert token.refresh_token == chain_head(fake_bitrix, token)
    assert token.version == 2


# --- 5: enable, re-connect and success resolve the incident through one path -----------------
def test_enable_after_a_permanent_failure_resolves_the_incident(
    fake_bitrix, token, admin_client, django_capture_on_commit_callbacks
):
    fake_bitrix.set_paid(CLIENT_ID, token.portal.domain, False)
    run_due(token)
    assert open_incident(token) and Token.objects.get().status == TokenStatus.PAYMENT_REQUIRED
    fake_bitrix.set_paid(CLIENT_ID, token.portal.domain, True)
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(
            reverse(CHANGELIST), {"action": "enable", "index": 0, "_selected_action": [token.pk]}
        )
    assert open_incident(token) is None
    token.refresh_from_db()
    assert token.status == TokenStatus.ACTIVE and token.next_refresh_at <= timezone.now()


def test_reconnect_resolves_the_incident(fake_bitrix, token):
    fake_bitrix.set_installed(CLIENT_ID, token.portal.domain, False)
    run_due(token)
    assert open_incident(token)
    fake_bitrix.set_installed(CLIENT_ID, token.portal.domain, True)
    connect(fake_bitrix)
    assert open_incident(token) is None


# --- 6: the sweep's claim ends with its task -------------------------------------------------
def claimed(token: Token, **fields: object) -> None:
    Token.objects.filter(pk=token.pk).update(
        claimed_until=timezone.now() + timedelta(minutes=6), **fields
    )


@pytest.mark.parametrize(
    ("fields", "outcome"),
    [
        # Times as offsets from when the test runs: "busy" needs a refresh started within
        # TOKEN_REFRESH_LEASE, and collection may be minutes earlier.
        ({"next_refresh_at": timedelta(hours=1)}, "not-due"),
        ({"status": TokenStatus.DISABLED}, "skipped"),
        ({"next_refresh_at": timedelta(0), "refresh_started_at": timedelta(0)}, "busy"),
    ],
)
def test_the_sweep_claim_is_released_on_every_outcome(fake_bitrix, token, fields, outcome):
    now = timezone.now()
    claimed(token, **{k: now + v if isinstance(v, timedelta) else v for k, v in fields.items()})
    assert refresh_if_due(token.pk) == outcome
    token.refresh_from_db()
    assert token.claimed_until is None


def test_enable_clears_the_sweep_claim_but_not_a_live_refresh(fake_bitrix, token):
    started = timezone.now()
    claimed(token, status=TokenStatus.DISABLED, refresh_started_at=started)
    state.enable([token.pk])
    token.refresh_from_db()
    assert token.claimed_until is None and token.refresh_started_at == started


# --- 7: a secret that cannot be decrypted ------------------------------------------------------
def test_an_unreadable_secret_gets_a_status_an_incident_and_a_documented_error(
    fake_bitrix, token, settings
):
    good_keys = settings.ENCRYPTION_KEYS
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    assert run_due(token) == "failed"
    stored = Token.objects.defer("access_token", "refresh_token").get(pk=token.pk)
    assert stored.status == TokenStatus.CONFIG_ERROR and stored.claimed_until is None
    assert "ENCRYPTION_KEYS" in stored.last_error
    assert RefreshAttempt.objects.filter(token=token, outcome="config_error").count() == 1
    incident = open_incident(token)
    assert incident.permanent and "ENCRYPTION_KEYS" in incident.message
    with pytest.raises(TokenConfigurationError) as raised:
        get_access_token("token")
    assert raised.value.setting == "ENCRYPTION_KEYS"
    assert "b24keeper.E004" in {m.id for m in run_checks()}

    settings.ENCRYPTION_KEYS = good_keys  # the key is back: the next sweep heals it
    assert run_due(token) == "refreshed"
    assert open_incident(token) is None
    assert Token.objects.get().status == TokenStatus.ACTIVE


# --- 8: configuration errors are their own type; unknown 5xx codes are transient -------------
def test_an_http_auth_server_without_allow_http_is_a_configuration_error(
    fake_bitrix, token, settings
):
    settings.BITRIX_ALLOW_HTTP = False
    fake_bitrix.reset_observations()
    assert run_due(token) == "failed"
    token.refresh_from_db()
    assert token.status == TokenStatus.CONFIG_ERROR
    assert token.refresh_started_at is None and token.claimed_until is None
    assert fake_bitrix.count() == 0  # nothing was sent
    assert "BITRIX_AUTH_SERVERS" in open_incident(token).message
    settings.BITRIX_ALLOW_HTTP = True
    assert run_due(token) == "refreshed"
    assert not token.attempts.filter(outcome="interrupted").exists()


@pytest.mark.parametrize("status", [502, 503, 429])
def test_an_unknown_error_code_with_a_5xx_or_429_is_transient(fake_bitrix, token, status):
    fake_bitrix.fail_next("unknown_error", status=status)
    Token.objects.filter(pk=token.pk).update(expires_at=timezone.now() + timedelta(seconds=20))
    with pytest.raises(TransientOAuthError):
        refresh("token")
    token.refresh_from_db()
    assert token.status == TokenStatus.REFRESH_FAILING


# --- an interrupted refresh is found within a lease, not when its schedule comes round ---------
def test_the_sweep_claims_an_interrupted_refresh_at_once(fake_bitrix, token):
    from portals.tokens.sweep import claim_due_tokens

    long_ago = timezone.now() - timedelta(minutes=5)
    Token.objects.filter(pk=token.pk).update(
        refresh_started_at=long_ago,
        next_refresh_at=timezone.now() + timedelta(minutes=20),
        claimed_until=timezone.now() + timedelta(minutes=5),  # a task lost with its worker
    )
    assert claim_due_tokens() == [token.pk]
    assert refresh_if_due(token.pk) == "refreshed"
    assert token.attempts.filter(outcome="interrupted").count() == 1


def test_get_access_token_does_not_serve_a_pair_whose_refresh_died(fake_bitrix, token):
    fake_bitrix.revoke_chain(token.refresh_token)  # Bitrix rotated; the answer never arrived
    Token.objects.filter(pk=token.pk).update(
        refresh_started_at=timezone.now() - timedelta(minutes=5)
    )
    with pytest.raises(PermanentOAuthError):
        get_access_token("token")
    assert Token.objects.get().status == TokenStatus.NEEDS_REAUTH
    assert open_incident(token).permanent
