"""What operations keep in the database: running totals for the metrics, and heartbeats.

Both live in PostgreSQL, not in a process, so that every web process scraped sees what every
worker on every machine counted, and so that nothing is lost when a process restarts.
"""

from django.db import models


class Counter(models.Model):
    """A running total of one metric series (name and labels), only ever incremented.

    Counters never derive from history rows, so deleting old history (ops.observe.retention) cannot
    make them go down.
    """

    name = models.CharField(max_length=100)
    # The labels as canonical JSON (sorted keys), e.g. {"outcome": "success"}.
    labels = models.CharField(max_length=400, default="{}")
    value = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["name", "labels"], name="one_counter_per_series")
        ]

    def __str__(self) -> str:
        return f"{self.name}{self.labels} = {self.value}"


class Heartbeat(models.Model):
    """When something last happened: the sweep started, a worker finished a task."""

    name = models.CharField(max_length=200, primary_key=True)
    at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} at {self.at:%Y-%m-%d %H:%M:%S}"
