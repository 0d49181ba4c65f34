"""gunicorn's access log, as the systemd unit and bin/serve run it, holds no secret from a URL:
not the callback's code and state, not the install frame's AUTH_ID or an auth[...] parameter,
not the key in a webhook-shaped /rest/<n>/<key>/ path (core.gunicorn.RedactingLogger)."""

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.processes import ROOT, child_env, wait_until

SECRETS = [f"SECRET{i}x" for i in range(1, 14)]
TARGETS = [
    f"/bitrix/x/callback/?code={SECRETS[0]}&state={SECRETS[1]}",
    f"/rest/1/b24k_{SECRETS[2]}/user.current",
    f"/bitrix/x/install/?DOMAIN=acme.bitrix24.com&AUTH_ID={SECRETS[3]}&REFRESH_ID={SECRETS[4]}"
    f"&auth%5Baccess_token%5D={SECRETS[5]}&auth[refresh_token]={SECRETS[6]}"
    f"&Access_Token={SECRETS[7]}&refresh_token={SECRETS[8]}&client_secret={SECRETS[9]}"
    f"&API_KEY={SECRETS[10]}&auth={SECRETS[11]}",
]
REFERER = f"https://acme.bitrix24.com/marketplace/app/1/?code={SECRETS[12]}&lang=en"
LOGGER_CLASS = "--logger-class core.gunicorn.RedactingLogger"


def production_arguments() -> list[str]:
    """gunicorn's arguments from the systemd unit's ExecStart (continuation lines joined)."""
    unit = (ROOT / "deploy/b24keeper-web.service").read_text()
    exec_start = re.search(r"^ExecStart=((?:.*\\\n)*.*)$", unit, re.M)
    assert exec_start is not None
    arguments = shlex.split(exec_start.group(1).replace("\\\n", " "))
    assert arguments[0].endswith("/gunicorn")
    return arguments[1:]


def replaced(arguments: list[str], option: str, value: str) -> list[str]:
    at = arguments.index(option)
    return [*arguments[: at + 1], value, *arguments[at + 2 :]]


@pytest.fixture
def gunicorn(tmp_path, db):
    """The production command on 127.0.0.1 with one worker; its output in files."""
    arguments = replaced(production_arguments(), "--bind", "127.0.0.1:0")
    # No control socket: the default path ($HOME/.gunicorn) is shared with other gunicorns.
    arguments = [*replaced(arguments, "--workers", "1"), "--no-control-socket"]
    out, err = tmp_path / "gunicorn.out", tmp_path / "gunicorn.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), *arguments],
            cwd=ROOT,
            env=child_env(),
            stdout=stdout,
            stderr=stderr,
        )
    logs = lambda: out.read_text() + err.read_text()  # noqa: E731
    try:
        wait_until(lambda: "Booting worker" in logs() or process.poll() is not None, 60, "boot")
        listening = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", logs())
        assert listening and process.poll() is None, logs()
        yield f"http://127.0.0.1:{listening.group(1)}", out, logs
    except BaseException:
        print(f"=== gunicorn ===\n{logs()[-4000:]}")
        raise
    finally:
        process.terminate()
        process.wait(15)


def test_the_access_log_holds_no_secret_from_a_url(gunicorn):
    base, access_log, logs = gunicorn
    for target in TARGETS:
        requests.get(base + target, headers={"Referer": REFERER}, timeout=30)
    wait_until(lambda: access_log.read_text().count("\n") >= len(TARGETS), 30, "access lines")
    written = logs()
    assert "/bitrix/x/callback/?code=" in access_log.read_text(), written  # lines are there
    assert "DOMAIN=acme.bitrix24.com" in written  # only secrets are blanked
    assert [secret for secret in SECRETS if secret in written] == [], written


def test_bin_serve_uses_the_same_logger():
    assert LOGGER_CLASS in (ROOT / "bin/serve").read_text()
    assert LOGGER_CLASS in " ".join(production_arguments())
