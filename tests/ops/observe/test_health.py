"""GET /health/: every state with its status code, answered within 2 s even when a dependency
hangs; anonymous callers see only ok/failing."""

import json
import socket
from datetime import timedelta

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.utils import timezone

from ops.record import heartbeat
from tests.brokers import use_broker
from tests.conftest import connect
from tests.fakes.silent_server import SilentServer
from tests.fakes.tcp_proxy import TcpProxy
from tests.processes import start_python, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
BEARER = "health-bearer-51d0"
CHECKS = {"database", "broker", "beat", "workers", "encryption", "alerts", "pairs"}


def get(client, bearer: bool = False) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {BEARER}"} if bearer else {}
    response = client.get("/health/", headers=headers)
    return response.status_code, json.loads(response.content)


def statuses(body: dict) -> dict[str, str]:
    return {name: check["status"] for name, check in body["checks"].items()}


def failing(body: dict) -> set[str]:
    return {name for name, word in statuses(body).items() if word == "failing"}


@pytest.fixture(autouse=True)
def bearer(settings):
    settings.METRICS_TOKEN = BEARER


def dead_port() -> int:
    """A port where nothing listens: connections are refused, as with a stopped broker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def health_in_a_new_process(**env: str) -> dict:
    """GET /health/ (with the bearer) from a fresh process; its own time, not start-up's."""
    code = (
        "import json, time\n"
        "from django.test import Client\n"
        "began = time.monotonic()\n"
        f"r = Client().get('/health/', HTTP_HOST='127.0.0.1', "
        f"headers={{'Authorization': 'Bearer {BEARER}'}})\n"
        "print(json.dumps({'code': r.status_code, 'seconds': time.monotonic() - began,"
        " 'body': json.loads(r.content)}))\n"
    )
    proc = start_python(code, METRICS_TOKEN=BEARER, **env)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def test_it_is_ok_with_beat_and_a_worker_running(fake_bitrix, celery, sweep_schedule, client):
    connect(fake_bitrix)  # a stored secret for the encryption check
    celery.worker()
    celery.beat()
    wait_until(lambda: heartbeat.last(heartbeat.SWEEP) is not None, 30, "a sweep")
    code, body = get(client)
    assert (code, body["status"]) == (200, "ok"), celery.logs()
    assert body["checks"] == {name: {"status": "ok"} for name in CHECKS}  # nothing more
    code, detailed = get(client, bearer=True)
    assert detailed["status"] == "ok"
    assert "w1@" in detailed["checks"]["workers"]["detail"]
    assert "sweep started" in detailed["checks"]["beat"]["detail"]
    assert all(check["seconds"] < 2 for check in detailed["checks"].values())


def test_beat_stopped_is_degraded_and_workers_say_they_are_fine(
    fake_bitrix, celery, sweep_schedule, client
):
    connect(fake_bitrix)
    celery.worker()  # no beat
    code, body = get(client, bearer=True)
    assert (code, body["status"], failing(body)) == (200, "degraded", {"beat"}), body
    assert "never started" in body["checks"]["beat"]["detail"]
    assert "answered with free slots: w1@" in body["checks"]["workers"]["detail"]
    heartbeat.touch(heartbeat.SWEEP, timezone.now() - timedelta(minutes=10))
    code, body = get(client, bearer=True)
    assert (code, failing(body)) == (200, {"beat"})
    assert "last started 600 s ago" in body["checks"]["beat"]["detail"]


def test_no_worker_fails_beat_and_workers(fake_bitrix, broker, sweep_schedule, client):
    connect(fake_bitrix)
    heartbeat.touch(heartbeat.SWEEP, timezone.now() - timedelta(minutes=10))
    code, body = get(client, bearer=True)
    assert (code, body["status"], failing(body)) == (200, "degraded", {"beat", "workers"})
    assert "no worker" in body["checks"]["workers"]["detail"]


def test_a_worker_that_finished_a_task_within_a_minute_counts_as_up(broker_url, client):
    heartbeat.touch("worker:w9@elsewhere", timezone.now() - timedelta(seconds=20))
    _, body = get(client, bearer=True)
    assert body["checks"]["workers"]["status"] == "ok"
    assert "w9@elsewhere (20 s ago)" in body["checks"]["workers"]["detail"]


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_a_stopped_broker_is_degraded_not_down(fake_bitrix, sweep_schedule, client, scheme):
    connect(fake_bitrix)
    heartbeat.touch(heartbeat.SWEEP)
    url = f"{scheme}://guest:guest@127.0.0.1:{dead_port()}/0"
    with use_broker(url):
        code, body = get(client, bearer=True)
    assert (code, body["status"]) == (200, "degraded")
    assert failing(body) == {"broker", "workers"}
    assert "guest:guest" not in json.dumps(body)  # no broker password in the details


@pytest.mark.parametrize("scheme", ["redis", "amqp"])
def test_it_answers_within_two_seconds_when_the_broker_hangs(fake_bitrix, scheme):
    connect(fake_bitrix)
    with SilentServer() as server:
        answer = health_in_a_new_process(
            CELERY_BROKER_URL=f"{scheme}://guest:guest@127.0.0.1:{server.port}/0"
        )
        assert server.accepted, "the check never reached the hanging broker"
    assert answer["seconds"] < 2.0
    assert (answer["code"], answer["body"]["status"]) == (200, "degraded")
    assert {"broker", "workers"} <= failing(answer["body"])
    assert answer["body"]["checks"]["database"]["status"] == "ok"


def test_an_unreachable_database_is_down_with_503(fake_bitrix, broker_url):
    connect(fake_bitrix)
    answer = health_in_a_new_process(DATABASE_URL=f"postgres://postgres@127.0.0.1:{dead_port()}/x")
    assert (answer["code"], answer["body"]["status"]) == (503, "down")
    assert {"database", "encryption", "beat"} <= failing(answer["body"])
    assert answer["body"]["checks"]["broker"]["status"] == "ok"
    assert answer["seconds"] < 2.0


def test_a_hanging_database_is_down_within_two_seconds(fake_bitrix, broker_url):
    with SilentServer() as server:
        answer = health_in_a_new_process(
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{server.port}/x"
        )
    assert (answer["code"], answer["body"]["status"]) == (503, "down")
    assert answer["seconds"] < 2.0


def test_a_wrong_encryption_key_is_down_with_503(fake_bitrix, broker_url, client, settings):
    connect(fake_bitrix)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    code, body = get(client, bearer=True)
    assert (code, body["status"]) == (503, "down")
    assert "encryption" in failing(body)
    assert "portals.AppCredentials" in body["checks"]["encryption"]["detail"]


def test_details_need_the_bearer_or_the_view_permission(broker_url, client):
    _, anonymous = get(client)
    assert all(set(check) == {"status"} for check in anonymous["checks"].values())
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    client.force_login(staff)
    _, body = get(client)
    assert all(set(check) == {"status"} for check in body["checks"].values())
    staff.user_permissions.add(Permission.objects.get(codename="view_token"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    _, body = get(client)
    assert all({"status", "detail", "seconds"} == set(c) for c in body["checks"].values())


def test_an_open_incident_no_channel_covers_makes_it_degraded(fake_bitrix, broker_url, client):
    from notifications.incidents import lifecycle

    heartbeat.touch("worker:w9@elsewhere", timezone.now())
    token = connect(fake_bitrix)
    lifecycle.open_incident(token, code="invalid_grant", message="dead", permanent=True)
    code, body = get(client, bearer=True)
    assert (code, body["status"]) == (200, "degraded") and "alerts" in failing(body)
    assert "1 open incident(s) unheard" in body["checks"]["alerts"]["detail"]


def test_a_worker_whose_every_slot_hangs_fails_though_it_answers(fake_bitrix, celery, client):
    from core import publish
    from portals.models import Token
    from portals.tokens.sweep import REFRESH_TASK

    token = connect(fake_bitrix)
    fake_bitrix.timeout_sleep = 60  # Bitrix24 never answers; the worker waits for it
    fake_bitrix.fail_next("timeout")
    celery.worker(BITRIX_READ_TIMEOUT="50", BITRIX_OAUTH_DEADLINE="55", TOKEN_REFRESH_LEASE="90")
    Token.objects.filter(pk=token.pk).update(next_refresh_at=timezone.now())
    publish.send(REFRESH_TASK, (token.pk,))
    wait_until(lambda: fake_bitrix.count("refresh_token") == 1, 30, "the refresh to hang")

    _, body = get(client, bearer=True)
    assert "workers" in failing(body), body["checks"]["workers"]
    detail = body["checks"]["workers"]["detail"]
    assert "slots are busy and none finished a task within a minute" in detail, detail
    assert "w1@" in detail


def test_pairs_names_the_answering_process_when_it_holds_a_pair(fake_bitrix, broker_url, tmp_path):
    """The web-process side of `pairs` (a worker's side: tests/portals/tokens/test_held.py): a
    process whose disk is full and whose database link is cut holds the pair, then serves
    /health/ itself."""
    connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        fake_bitrix.after_grant = lambda params: proxy.cut()
        proc = start_python(
            "import json, resource, signal\n"
            "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))  # a full disk\n"
            "from django.test import Client\n"
            "from portals.tokens import refresh, PairNotStored\n"
            "try:\n    refresh('token')\nexcept PairNotStored:\n    pass\n"
            f"r = Client().get('/health/', HTTP_HOST='127.0.0.1', "
            f"headers={{'Authorization': 'Bearer {BEARER}'}})\n"
            "print(json.dumps(json.loads(r.content)['checks']['pairs']))\n",
            DATABASE_URL=f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
            TOKEN_STORE_RETRY="1",
            METRICS_TOKEN=BEARER,
            VAR_DIR=str(tmp_path / "machine-a"),
        )
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    check = json.loads(out.strip().splitlines()[-1])
    assert check["status"] == "failing", check
    where = f"token 'token' on {socket.gethostname()} (process {proc.pid}) since "
    assert where in check["detail"], check
