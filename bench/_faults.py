"""The soak's fault mode (bench/soak.py --faults): the worker and beat reach PostgreSQL and the
broker through TCP proxies (tests/fakes/tcp_proxy.py) that a chaos thread cuts or black-holes
at random for random spans, then heals; alerts go to a fake Telegram through a real channel,
so the verdict can say whether every lost token was heard."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

from _setup import ROOT  # noqa: F401  (first: puts the repository on sys.path)

from tests.fakes.provider_telegram import BOT_TOKEN, CHAT_ID
from tests.fakes.tcp_proxy import TcpProxy


class Links:
    """The worker's and beat's links to the database and the broker, each a cuttable proxy."""

    def __init__(self, database_url: str, broker_url: str) -> None:
        self.database = TcpProxy("127.0.0.1", _port(database_url))
        self.broker = TcpProxy("127.0.0.1", _port(broker_url))
        self.database_url = _through(database_url, self.database.port)
        self.broker_url = _through(broker_url, self.broker.port)
        self.faults: Counter = Counter()

    def chaos(self, stop: threading.Event, low: float, high: float, span: float) -> None:
        """Until `stop`: every `low`…`high` s, cut or black-hole one link for up to `span` s."""
        while not stop.wait(random.uniform(low, high)):
            name, proxy = random.choice([("database", self.database), ("broker", self.broker)])
            how = random.choice(["cut", "blackhole"])
            getattr(proxy, how)()
            self.faults[f"{name} {how}"] += 1
            stop.wait(random.uniform(1, span))
            proxy.heal()

    def heal(self) -> None:
        self.database.heal()
        self.broker.heal()

    def close(self) -> None:
        self.database.cut()
        self.broker.cut()


def _port(url: str) -> int:
    return int(url.split("@")[-1].split("//")[-1].split("/")[0].split(":")[1])


def _through(url: str, port: int) -> str:
    head, _, tail = url.rpartition(":")
    return f"{head}:{port}/{tail.split('/', 1)[1]}"


def add_channel() -> None:
    """One enabled Telegram channel covering every token (TELEGRAM_API_URL: the fake); the
    notifications sweep every second."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    from notifications.beat import SWEEP_TASK
    from notifications.models import Channel

    channel = Channel(kind="telegram", name="soak on-call", destination=str(CHAT_ID))
    channel.set_credentials({"bot_token": BOT_TOKEN})
    channel.save()
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.filter(task=SWEEP_TASK).update(interval=every_second)


def heard_verdict(settle_seconds: float) -> dict[str, int]:
    """Lost tokens and whether their incident reached the channel; incidents left open on
    active tokens. Waits up to `settle_seconds` for the last alerts to go out."""
    from notifications.models import Delivery, Incident
    from portals.models import Token, TokenStatus

    def unheard() -> list[int]:
        lost = Token.objects.filter(status=TokenStatus.NEEDS_REAUTH).values_list("pk", flat=True)
        sent = Delivery.objects.filter(status=Delivery.Status.SENT, incident__resolved_at=None)
        heard = set(sent.values_list("incident__token_id", flat=True))
        return [pk for pk in lost if pk not in heard]

    deadline = time.monotonic() + settle_seconds
    while unheard() and time.monotonic() < deadline:
        time.sleep(1)
    open_on_active = Incident.objects.filter(
        resolved_at=None, kind=Incident.Kind.TOKEN, token__status=TokenStatus.ACTIVE
    ).count()
    lost = Token.objects.filter(status=TokenStatus.NEEDS_REAUTH).count()
    return {
        "lost tokens whose incident reached the channel": lost - len(unheard()),
        "lost tokens nobody heard of (must be 0)": len(unheard()),
        "incidents open on active tokens (must be 0)": open_on_active,
        "alerts sent": Delivery.objects.filter(status=Delivery.Status.SENT).count(),
    }
