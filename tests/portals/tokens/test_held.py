"""A pair a real worker holds in memory (its journal could not be written, its database link is
cut) is named by /health/ and on the token's page, and both clear once the link heals and the
worker's journal loop stores it."""

import json
import socket
import subprocess
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from core import publish
from portals.models import RefreshAttempt, Token
from portals.tokens.sweep import REFRESH_TASK
from tests.conftest import connect
from tests.fakes.tcp_proxy import TcpProxy
from tests.processes import start_python, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
BEARER = "held-pairs-bearer-7c1e"
# A worker whose disk is full: RLIMIT_FSIZE fails every write to a regular file (the journal),
# while its log goes to pipes, which the limit does not touch. Threads pool: the process that
# answers remote control is the one that refreshes (deploy/ runs workers so).
WORKER = (
    "import resource, signal\n"
    "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    "resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))\n"
    "from config.celery import app\n"
    "app.worker_main(['worker', '-n', 'held@%h', '--pool', 'threads', '-c', '2',"
    " '--loglevel', 'INFO', '--without-gossip', '--without-mingle', '--without-heartbeat'])\n"
)


class Logs:
    """Drains a child's pipes (so it never blocks on a full one) and keeps what it said."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        for pipe in (proc.stdout, proc.stderr):
            threading.Thread(target=self._drain, args=(pipe,), daemon=True).start()

    def _drain(self, pipe) -> None:
        for line in pipe:
            self.lines.append(line)

    def __str__(self) -> str:
        return "".join(self.lines)[-6000:]


def through(proxy: TcpProxy) -> str:
    db = connection.settings_dict
    return f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}"


def pairs_check(client) -> dict:
    response = client.get("/health/", headers={"Authorization": f"Bearer {BEARER}"})
    return json.loads(response.content)["checks"]["pairs"]


def page(admin_client, token: Token) -> str:
    return admin_client.get(reverse("admin:portals_token_change", args=[token.pk])).content.decode()


def test_a_pair_a_worker_holds_in_memory_shows_on_health_and_the_token_page(
    fake_bitrix, broker_url, client, admin_client, settings, tmp_path
):
    settings.METRICS_TOKEN = BEARER
    token = connect(fake_bitrix)
    db = connection.settings_dict
    with TcpProxy(db["HOST"], int(db["PORT"])) as proxy:
        worker = start_python(
            WORKER,
            DATABASE_URL=through(proxy),
            TOKEN_STORE_RETRY="1",
            TOKEN_JOURNAL_RETRY="0.2",
            VAR_DIR=str(tmp_path / "machine-w"),
        )
        logs = Logs(worker)
        try:
            wait_until(lambda: "ready." in str(logs), 60, "the worker to start")
            assert pairs_check(client)["detail"].startswith("none held"), str(logs)

            fake_bitrix.after_grant = lambda params: proxy.cut()
            Token.objects.filter(pk=token.pk).update(
                next_refresh_at=timezone.now() - timedelta(seconds=1)
            )
            publish.send(REFRESH_TASK, (token.pk,))
            wait_until(proxy.cut_event.is_set, 30, "the worker's refresh to cut its link")
            fake_bitrix.after_grant = None
            wait_until(lambda: "waits in memory on" in str(logs), 30, "the worker to hold it")

            check = pairs_check(client)
            assert check["status"] == "failing", check
            where = f"token 'token' on {socket.gethostname()} (process {worker.pid})"
            assert where in check["detail"], check
            html = page(admin_client, token)
            assert 'id="held-pair"' in html
            assert f"waits in memory on {socket.gethostname()} (process {worker.pid})" in html

            proxy.heal()
            restored = token.attempts.filter(outcome=RefreshAttempt.Outcome.RESTORED)
            wait_until(restored.exists, 30, "the worker's journal loop to store the pair")
            # It leaves the worker's memory just after its row commits: wait for that too.
            wait_until(lambda: pairs_check(client)["status"] == "ok", 30, "the check to clear")
            assert pairs_check(client)["detail"].startswith("none held (this process and")
            assert 'id="held-pair"' not in page(admin_client, token)
        except BaseException:
            print(f"=== the worker's log ===\n{logs}")
            raise
        finally:
            worker.terminate()
            worker.wait(timeout=30)
