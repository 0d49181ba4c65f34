"""Leave a fifth of each portals_token page free (PostgreSQL only), so the sweep's claim (it
sets only `claimed_until`, which no index covers) is a HOT update: the new row version stays
on its page and none of the table's indexes gets a new entry. At 100,000 tokens that halves
the claim of 2,000 rows (bench/sweep_query.py). Rows written from now on honour it; the
refreshes rewrite every row within a cycle, so an existing table follows without a rewrite."""

from django.db import migrations

FILLFACTOR = 80


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE portals_token SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE portals_token RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("portals", "0013_renew_app_status")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor, elidable=False)]
