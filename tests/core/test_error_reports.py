"""A URL with a password in it is masked in Django's error page and the ADMINS error email by
its value, whatever the setting (or header, or variable) holding it is called.

The 500s are real: the database refuses the row an admin form writes
(tests/system/test_secret_leaks.py).
"""

import pytest
from django.conf import settings as django_settings
from django.core import mail
from django.test import Client
from django.urls import reverse

from core.error_reports import SecretsExceptionReporterFilter
from tests.conftest import CLIENT_ID, CLIENT_SECRET
from tests.system.test_secret_leaks import refuse_new_rows

pytestmark = pytest.mark.django_db
PASSWORD = "pw-Quokka-7731"
URL = f"redis://b24keeper:{PASSWORD}@cache.internal:6379/1"
URL_SETTINGS = {
    "DATABASE_URL": f"postgres://b24keeper:{PASSWORD}@db.internal:5432/b24keeper",
    "CELERY_BROKER_URL": f"amqp://b24keeper:{PASSWORD}@mq.internal:5672//",
    "EMAIL_URL": f"smtp+tls://alerts%40example.org:{PASSWORD}@smtp.example.org:587",
    "REDIS_URL": f"rediss://:{PASSWORD}@cache.internal:6380/1",
    # Made-up settings, as a later issue could add them, under names no list would guess.
    "UPSTREAM_MIRROR": f"https://mirror:{PASSWORD}@mirror.example.org/",
    "STANDBY_STORES": [f"redis://u:{PASSWORD}@shard1:6379/0", ("x", f"redis://:{PASSWORD}@s2/0")],
    "OUTBOUND_ROUTES": {"https": f"http://proxy:{PASSWORD}@proxy.internal:3128"},
    "WAREHOUSE_DSN": f"postgresql://reader@warehouse.internal/dw?password={PASSWORD}",
}


@pytest.fixture
def url_settings(settings):
    for name, value in URL_SETTINGS.items():
        setattr(settings, name, value)
    settings.ADMINS = [("Ops", "ops@example.org")]
    return settings


def fail_a_form(client: Client):
    """A real 500: the database refuses the app credentials row the admin form writes."""
    refuse_new_rows("portals_appcredentials")
    form = {
        "name": "Acme CRM",
        "client_id": CLIENT_ID,
        "new_client_secret": CLIENT_SECRET,
        "scope": "crm,user",
        "refresh_policy": "interval",
        "refresh_interval_minutes": 25,
        "refresh_before_expiry_minutes": 10,
        "keepalive_days": 7,
    }
    url = reverse("admin:portals_appcredentials_add")
    return client.post(url, form, HTTP_X_UPSTREAM=URL)  # a header shown among META


def test_every_setting_is_masked_by_its_value_whatever_its_name():
    reporter_filter = SecretsExceptionReporterFilter()
    names = [name for name in dir(django_settings) if name.isupper()]
    assert len(names) > 100
    for name in [*names, *URL_SETTINGS]:
        for value in (URL, {"x": URL}, [URL], (URL,), {"nested": [{"deeper": URL}]}):
            assert PASSWORD not in repr(reporter_filter.cleanse_setting(name, value)), name


def test_the_safe_settings_keep_the_host_and_hide_the_password(url_settings):
    safe = SecretsExceptionReporterFilter().get_safe_settings()
    assert PASSWORD not in repr(safe)
    assert "cache.internal:6380" in safe["REDIS_URL"]  # still useful for a diagnosis
    assert "smtp.example.org" in safe["EMAIL_URL"]
    assert "proxy.internal:3128" in safe["OUTBOUND_ROUTES"]["https"]


def test_the_debug_error_page_shows_no_password(url_settings, admin_user):
    url_settings.DEBUG = True
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    response = fail_a_form(client)
    page = response.content.decode()
    assert response.status_code == 500 and "IntegrityError" in page
    assert "cache.internal:6380" in page and "UPSTREAM_MIRROR" in page  # settings are listed
    assert PASSWORD not in page


def test_the_admins_error_email_shows_no_password(url_settings, admin_user):
    url_settings.DEBUG = False
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    assert fail_a_form(client).status_code == 500
    [email] = mail.outbox
    assert email.to == ["ops@example.org"] and "IntegrityError" in email.body
    assert "UPSTREAM_MIRROR" in email.body  # the settings are in the email
    texts = [email.subject, email.body, *(content for content, _ in email.alternatives)]
    assert not [text for text in texts if PASSWORD in text]
