"""Start other Python processes that share the test database and the fake servers."""

import os
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: the test database, the same fakes and keys."""
    db = connection.settings_dict
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="tests.settings",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        BITRIX_OAUTH_SERVER=settings.BITRIX_OAUTH_SERVER,
        BITRIX_AUTH_SERVERS=",".join(settings.BITRIX_AUTH_SERVERS),
        BITRIX_ALLOW_HTTP="true",
        ENCRYPTION_KEYS=",".join(settings.ENCRYPTION_KEYS),
        PYTHONPATH=str(ROOT),
        # The same local journal as this test (TOKEN_JOURNAL_DIR is VAR_DIR/journal).
        VAR_DIR=str(Path(settings.TOKEN_JOURNAL_DIR).parent),
    )
    env.update(extra)
    return env


def start_python(code: str, **extra_env: str) -> subprocess.Popen:
    """Run `code` after django.setup() in a new interpreter."""
    prelude = "import django; django.setup()\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code],
        cwd=ROOT,
        env=child_env(**extra_env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class CeleryProcesses:
    """Real Celery workers and beats against the test database and a broker (Redis or
    RabbitMQ, see tests/brokers.py).

    Used as a context manager: everything started is stopped on exit, and each process's
    output goes to a file that a failing test can print.
    """

    def __init__(self, tmp_path: Path, broker_url: str, **env: str) -> None:
        self.tmp_path = tmp_path
        self.env = {"CELERY_BROKER_URL": broker_url, **env}
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def _start(self, name: str, args: list[str], **env: str) -> subprocess.Popen:
        log_path = self.tmp_path / f"{name}.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen(
                [str(Path(sys.executable).parent / "celery"), "-A", "config", *args],
                cwd=ROOT,
                env=child_env(**{**self.env, **env}),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.procs.append((proc, log_path))
        return proc

    def worker(
        self, name: str = "w1", concurrency: int = 1, machine: bool = False, **env: str
    ) -> subprocess.Popen:
        """A worker named `name`@host. machine=True gives it a VAR_DIR of its own (its own
        local journal), as a worker on another machine would have."""
        if machine:
            env.setdefault("VAR_DIR", str(self.tmp_path / f"machine-{name}"))
        proc = self._start(
            name,
            ["worker", "-n", f"{name}@%h", "-c", str(concurrency), "--pool", "prefork",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            **env,
        )  # fmt: skip
        self.wait_for_line(name, "ready.")
        return proc

    def beat(self, name: str = "beat", **env: str) -> subprocess.Popen:
        return self._start(
            name,
            ["beat", "--loglevel", "INFO", "--max-interval", "1", "--pidfile=",
             "-S", "django_celery_beat.schedulers:DatabaseScheduler"],
            **env,
        )  # fmt: skip

    def log(self, name: str) -> str:
        return (self.tmp_path / f"{name}.log").read_text()

    def wait_for_line(self, name: str, text: str, timeout: float = 60) -> None:
        try:
            wait_until(lambda: text in self.log(name), timeout, f"{name} to print {text!r}")
        except AssertionError as err:
            raise AssertionError(f"{err}:\n{self.log(name)[-3000:]}") from None

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-4000:]}" for _, path in self.procs)

    def __enter__(self) -> "CeleryProcesses":
        return self

    def __exit__(self, exc_type: type | None, *exc: object) -> None:
        if exc_type is not None:
            # A failing real-process test shows what its processes said (pytest prints this
            # captured output with the failure).
            print(f"=== logs of the test's processes ===\n{self.logs()}")
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc, _ in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def child_pids(pid: int) -> list[int]:
    """The direct children of a process (a prefork worker's pool processes)."""
    children = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in children.read_text().split()] if children.exists() else []


# How often wait_until() looks again: the one poll interval of the suite. Processes, logs and
# database rows give no event to block on, so a condition is checked this often until it
# holds; a test never waits a fixed time for an outcome.
POLL_SECONDS = 0.1


def wait_until(predicate, timeout: float = 30, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {message}")
        time.sleep(POLL_SECONDS)
