"""Following a message after the provider accepted it (the body of the `check_delivery`
task). "Accepted" is not "delivered": Twilio, MessageBird, UniSender (checkSms, checkEmail)
and Mandrill (messages/info) report later whether the message arrived.

After a send, the lead delivery (of a digest: the one whose message it was) is asked about at
growing intervals until NOTIFY_STATUS_CHECK_SECONDS have passed:

- delivered: `delivered_at` is set on it and on the deliveries it carried;
- undelivered: it counts as a failed delivery, with the provider's reason on the rows, and is
  handled like a send error (notifications/delivery/outcomes.py): a permanent reason switches the
  channel off, a passing one sends it again while its incident is open;
- still on its way when the time is up: it stays "sent", unconfirmed.

A failure to ask (the provider's status API is down) says nothing about the message: it is
asked again later. A check is claimed like a send, by moving `next_check_at` forward in one
conditional UPDATE, so a duplicate task asks nothing.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from notifications.backends import (
    DELIVERED,
    PENDING,
    UNDELIVERED,
    ConfigurationError,
    DeliveryError,
    DeliveryReport,
    PermanentDeliveryError,
)
from notifications.delivery import outcomes
from notifications.delivery.outcomes import Outcome, seconds
from notifications.models import Channel, Delivery

logger = logging.getLogger(__name__)
Status = Delivery.Status
# Never wait longer than this between two questions about one message.
MAX_INTERVAL = timedelta(minutes=5)


def process_check(delivery_id: int) -> Outcome:
    """Ask the provider about the delivery's message, or say when to ask again."""
    now = timezone.now()
    rows = Delivery.objects.filter(pk=delivery_id, status=Status.SENT).values(
        "channel_id", "provider_message_id", "sent_at", "check_until", "next_check_at"
    )
    row = rows.first()
    if row is None or row["next_check_at"] is None:
        return Outcome("skipped")  # not sent (any more), or nothing left to ask
    if row["next_check_at"] > now:
        return Outcome("waiting", seconds(row["next_check_at"] - now))
    lease = timedelta(seconds=settings.NOTIFY_SENDING_LEASE_SECONDS)
    claimed = Delivery.objects.filter(
        pk=delivery_id, status=Status.SENT, next_check_at=row["next_check_at"]
    ).update(next_check_at=now + lease)
    if not claimed:
        return Outcome("skipped")  # another task is asking
    channel = Channel.objects.defer("credentials").get(pk=row["channel_id"])
    report = _ask(channel, row["provider_message_id"])
    if report is None:
        return _stop(delivery_id, "not checked")
    if report.state == DELIVERED:
        carried = Delivery.objects.filter(Q(pk=delivery_id) | Q(digest_id=delivery_id))
        carried.filter(status=Status.SENT).update(delivered_at=timezone.now(), next_check_at=None)
        return Outcome("delivered")
    if report.state == UNDELIVERED and report.error is not None:
        return _undelivered(channel, delivery_id, report.error)
    return _later(delivery_id, row["sent_at"], row["check_until"])


def _ask(channel: Channel, message_id: str) -> DeliveryReport | None:
    """The provider's report; a pending one when asking failed for now; None when asking
    cannot work (the channel's configuration is broken, or the provider refuses to say)."""
    try:
        return channel.backend().check(message_id)
    except (ConfigurationError, PermanentDeliveryError) as err:
        logger.warning("channel %s: cannot check message %s: %s", channel.pk, message_id, err)
        return None
    except DeliveryError as err:
        return DeliveryReport(PENDING, f"could not ask: {err}")
    except Exception:
        logger.exception("channel %s: unexpected error while checking a message", channel.pk)
        return DeliveryReport(PENDING, "could not ask (an internal error)")


def _later(delivery_id: int, sent_at: datetime | None, until: datetime | None) -> Outcome:
    now = timezone.now()
    if until is None or now >= until:
        return _stop(delivery_id, "unconfirmed")
    first = timedelta(seconds=settings.NOTIFY_STATUS_CHECK_FIRST_SECONDS)
    # Ask at growing intervals: about as long after the last question as it was sent before.
    wait = min(max(now - (sent_at or now), first), MAX_INTERVAL, until - now)
    Delivery.objects.filter(pk=delivery_id).update(next_check_at=now + wait)
    return Outcome("pending", seconds(wait))


def _stop(delivery_id: int, word: str) -> Outcome:
    Delivery.objects.filter(pk=delivery_id).update(next_check_at=None)
    return Outcome(word)


def _undelivered(channel: Channel, lead: int, error: DeliveryError) -> Outcome:
    """The message did not arrive: what it carried failed, like a send that failed."""
    ids = list(
        Delivery.objects.filter(Q(pk=lead) | Q(digest_id=lead), status=Status.SENT).values_list(
            "pk", flat=True
        )
    )
    Delivery.objects.filter(pk=lead).update(next_check_at=None)
    reason = f"Not delivered: {error}"
    logger.warning(
        "channel %s (%s): message of delivery %s %s", channel.pk, channel.kind, lead, reason
    )
    if error.permanent:
        return outcomes.fail(channel, ids, reason, (Status.SENT,))
    return outcomes.retry_later(channel, ids, lead, reason, error.retry_after, (Status.SENT,))
