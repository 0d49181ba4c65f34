"""Benchmarks never rot: every script in bench/ runs at a tiny size (bench/smoke.py) and must
exit 0, its own checks passed. Nothing about its figures is asserted.

Each script drops and re-creates its database `<test database>_bench_smoke` (a copy of one
migrated once per session) and flushes Redis `BENCH_REDIS_URL` (default db 14), never the
test broker's db."""

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import smoke  # noqa: E402  (bench/ is scripts, not a package)

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def template() -> Iterator[str]:
    base = urlparse(os.environ.get("DATABASE_URL", "")).path.lstrip("/") or "b24keeper"
    os.environ.setdefault("BENCH_DATABASE", f"{base}_bench_smoke")
    os.environ.setdefault("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    with smoke.template_database() as name:
        yield name


def test_every_script_has_a_tiny_size() -> None:
    assert set(smoke.scripts()) - {"smoke.py"} == set(smoke.SMOKE)


@pytest.mark.parametrize("name", list(smoke.SMOKE))
def test_bench_runs(template: str, name: str) -> None:
    result = smoke.run(name, template)
    assert result.returncode == 0, (
        f"bench/{name} {' '.join(smoke.SMOKE[name])} failed ({result.returncode}):\n"
        f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
