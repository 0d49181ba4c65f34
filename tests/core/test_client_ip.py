"""TRUSTED_PROXY_COUNT decides which address is the client's, for the admin login throttle
(django-axes) and an API key's last_used_from: 0 (the default) trusts no X-Forwarded-For at
all; N skips the N trusted proxies from the right of X-Forwarded-For + REMOTE_ADDR."""

import pytest
from django.core.checks import run_checks
from django.test import Client, RequestFactory

from api import keys
from api.models import ApiKey
from core.client_ip import forwarded_client_ip
from tests.api.test_views import get
from tests.system.test_production_settings import PASSWORD, log_in

PROXY = "10.0.0.2"  # REMOTE_ADDR: the proxy next to us


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("ann", "ann@example.com", PASSWORD)


@pytest.fixture
def key(token) -> str:
    return keys.create_key("billing", ["token"])[1]


@pytest.mark.parametrize(
    ("count", "forwarded", "expected"),
    [
        (0, None, PROXY),
        (0, "198.51.100.7", PROXY),  # no proxy trusted: the header is anyone's
        (0, "192.0.2.1, 198.51.100.7", PROXY),
        (1, "198.51.100.7", "198.51.100.7"),  # nginx appended the peer it saw
        (1, "192.0.2.1, 198.51.100.7", "198.51.100.7"),  # a forged first hop is skipped
        (1, "192.0.2.1,198.51.100.7 ,  ", PROXY),  # an empty last hop is nobody's address
        (1, None, PROXY),  # fewer hops than trusted proxies
        (1, "not-an-address", PROXY),
        (1, "2001:db8::7", "2001:db8::7"),
        (2, "192.0.2.1, 198.51.100.7, 10.0.0.3", "198.51.100.7"),  # CDN, then nginx
        (2, "198.51.100.7, 10.0.0.3", "198.51.100.7"),
        (2, "10.0.0.3", PROXY),  # fewer hops than trusted proxies
    ],
)
def test_the_client_is_the_address_n_hops_from_the_right(settings, count, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = count
    headers = {"HTTP_X_FORWARDED_FOR": forwarded} if forwarded is not None else {}
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, **headers)
    assert forwarded_client_ip(request) == expected


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("https", "count", "expected"),
    [
        (True, 0, PROXY),
        (False, 1, "198.51.100.7"),
        (True, 1, "198.51.100.7"),
        (True, 2, "192.0.2.1"),
    ],
)
def test_an_api_key_records_the_address_trusted_proxies_saw(
    settings, token, key, https, count, expected
):
    settings.HTTPS, settings.TRUSTED_PROXY_COUNT = https, count
    client = Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7")
    get(client, "token", key, secure=True)
    assert ApiKey.objects.get().last_used_from == expected


@pytest.mark.django_db
def test_without_a_trusted_proxy_a_forged_header_does_not_dodge_the_login_throttle(staff, settings):
    settings.AXES_FAILURE_LIMIT = 2
    settings.TRUSTED_PROXY_COUNT = 0
    statuses = [
        log_in(Client(REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"192.0.2.{i}"), "wrong")
        for i in range(3)
    ]
    assert statuses == [200, 429, 429]
    # With TRUSTED_PROXY_COUNT=1: the throttle behind nginx is in
    # tests/system/test_production_settings.py.


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("https", "count", "warned"), [(True, 0, True), (True, 1, False), (False, 0, False)]
)
def test_check_deploy_warns_when_https_trusts_no_proxy(settings, https, count, warned):
    settings.HTTPS, settings.TRUSTED_PROXY_COUNT = https, count
    found = {m.id for m in run_checks(include_deployment_checks=True)}
    assert ("b24keeper.W004" in found) is warned
