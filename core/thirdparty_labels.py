"""Third-party words on our admin pages, in the reader's language: the names b24keeper gives
its periodic tasks and staff groups (the rows keep their English names; they are translated
where shown), django-celery-beat's schedules with correct plurals and crontabs described in the
reader's language, and the libraries' labels their own Russian catalogues lack (marked here so
that makemessages keeps them in our locale/, which Django reads first).

`install()` is called once by core.apps.AdminConfig.ready (through core.thirdparty_admin)."""

from axes.models import AccessAttemptExpiration
from django.contrib.auth.models import Group
from django.utils import translation
from django.utils.translation import gettext, gettext_lazy, gettext_noop, ngettext, ngettext_lazy
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, cronexp

# The names of rows our migrations make (portals/beat.py, notifications/beat.py, ops/beat.py,
# core/roles.py): translated where shown.
ROW_NAMES = (
    gettext_noop("Sweep due tokens"),
    gettext_noop("Check uninstall handlers (daily)"),
    gettext_noop("Notification reminders and lost deliveries"),
    gettext_noop("Prune old history (daily)"),
    gettext_noop("b24keeper viewers"),
    gettext_noop("b24keeper operators"),
)
# django-celery-beat's and django-axes' labels that their Russian catalogues lack.
LIBRARY_LABELS = (
    gettext_noop("Periodic Tasks Using This Schedule"),
    gettext_noop(
        "Timedelta with seconds which the schedule will no longer trigger the task to run"
    ),
    gettext_noop("Override Routing Key for low-level AMQP routing"),
    gettext_noop("Override Exchange for low-level AMQP routing"),
    gettext_noop(
        'Cron Days Of The Week to Run. Use "*" for "all", Sunday is 0 or 7, Monday is 1. '
        '(Example: "0,5")'
    ),
    gettext_noop('Cron Months (1-12) Of The Year to Run. Use "*" for "all". (Example: "1,12")'),
    gettext_noop("Expires timedelta with seconds"),
    gettext_noop("Schedule"),
    gettext_noop("Arguments"),
    gettext_noop("Execution Options"),
    gettext_noop("Task Name"),
    gettext_noop("Scheduler"),
    gettext_noop("Human readable"),
    gettext_noop("Status"),
    gettext_noop("User Agent"),
    gettext_noop("Locked Out"),
    gettext_noop("Attempt Remaining"),
    gettext_noop("Access attempt expiration"),
)
# Django's admin titles put a model's name after a verb ("Выберите %s для изменения"), which in
# Russian needs another case than the name has: ours put it after a colon instead.
DJANGO_TITLES = (
    gettext_noop("Select %s to change"),
    gettext_noop("Select %s to view"),
    gettext_noop("Add %s"),
    gettext_noop("Change %s"),
    gettext_noop("View %s"),
    gettext_noop("Add %(name)s"),
    gettext_noop("Add another %(verbose_name)s"),
)
# Django's Russian admin texts quote names as “name“ (mismatched quotes): ours use «name».
DJANGO_QUOTED = (
    gettext_noop("Added “%(object)s”."),
    gettext_noop("Changed “%(object)s” — %(changes)s"),
    gettext_noop("Deleted “%(object)s.”"),
    gettext_noop("Added {name} “{object}”."),
    gettext_noop("Changed {fields} for {name} “{object}”."),
    gettext_noop("Deleted {name} “{object}”."),
    gettext_noop("Hold down “Control”, or “Command” on a Mac, to select more than one."),
    gettext_noop("The {name} “{obj}” was added successfully. You may add another {name} below."),
    gettext_noop("The {name} “{obj}” was changed successfully. You may edit it again below."),
    gettext_noop("The {name} “{obj}” was changed successfully. You may add another {name} below."),
    gettext_noop("The {name} “{obj}” was changed successfully."),
    gettext_noop("The %(name)s “%(obj)s” was deleted successfully."),
    gettext_noop("%(name)s with ID “%(key)s” doesn’t exist. Perhaps it was deleted?"),
)
# Django's admin messages that put a count before a model's plural name ("3 инциденты") or
# a gendered verb after it: ours say "Удалено: 3 (инциденты)".
DJANGO_COUNTS = (
    gettext_noop("Successfully deleted %(count)d %(items)s."),
    gettext_noop("Cannot delete %(name)s"),
    ngettext_lazy(
        "%(count)s %(name)s was changed successfully.",
        "%(count)s %(name)s were changed successfully.",
    ),
)
# cron_descriptor's catalogue for each of our languages.
CRON_LOCALES = {"ru": "ru_RU", "en": "en_US"}


def interval_text(schedule: IntervalSchedule) -> str:
    """ "every 60 seconds", with the plural the number needs."""
    n = schedule.every
    texts = {
        IntervalSchedule.DAYS: ngettext("every %(n)d day", "every %(n)d days", n),
        IntervalSchedule.HOURS: ngettext("every %(n)d hour", "every %(n)d hours", n),
        IntervalSchedule.MINUTES: ngettext("every %(n)d minute", "every %(n)d minutes", n),
        IntervalSchedule.SECONDS: ngettext("every %(n)d second", "every %(n)d seconds", n),
        IntervalSchedule.MICROSECONDS: ngettext(
            "every %(n)d microsecond", "every %(n)d microseconds", n
        ),
    }
    return texts.get(schedule.period, f"{n} {schedule.period}") % {"n": n}


def crontab_text(schedule: CrontabSchedule) -> str:
    """The crontab described in the reader's language, and its time zone."""
    # cron_descriptor ships no type information.
    from cron_descriptor import Options, get_description  # type: ignore[import-untyped]

    expression = " ".join(
        cronexp(part)
        for part in (
            schedule.minute,
            schedule.hour,
            schedule.day_of_month,
            schedule.month_of_year,
            schedule.day_of_week,
        )
    )
    options = Options()
    language = (translation.get_language() or "en").split("-")[0]
    options.locale_code = CRON_LOCALES.get(language, "en_US")
    options.use_24hour_time_format = True
    try:
        described = get_description(expression, options)
    except Exception:  # the library's own fallback: the expression as it is
        described = expression
    return f"{described} {schedule.timezone}"


crontab_text.short_description = gettext_lazy("Human readable")  # type: ignore[attr-defined]


def task_text(task: PeriodicTask) -> str:
    schedule = task.interval or task.crontab or task.solar or task.clocked
    return f"{gettext(task.name)}: {schedule}" if schedule else gettext(task.name)


def group_text(group: Group) -> str:
    return gettext(group.name)


def install() -> None:
    """Show these rows in the reader's language wherever the admin prints them (lists, titles,
    delete confirmations, the action checkboxes): the libraries' own __str__ are English or
    have no plurals."""
    IntervalSchedule.__str__ = interval_text
    PeriodicTask.__str__ = task_text
    Group.__str__ = group_text  # type: ignore[method-assign,assignment]
    CrontabSchedule.human_readable = property(crontab_text)
    # A plain string in the library (no gettext): the same words, now translatable.
    PeriodicTask._meta.get_field("task").verbose_name = gettext_lazy("Task Name")
    AccessAttemptExpiration._meta.verbose_name = gettext_lazy("Access attempt expiration")
