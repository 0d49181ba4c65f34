"""The layers are checked, not hoped for: `lint-imports` (bin/test runs it) keeps the contracts
in pyproject.toml, and breaks them on a copy of the code that imports notifications from
portals, or that closes an import cycle between two modules of a package."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("config", "core", "encryption", "portals", "notifications", "api", "dashboard", "ops")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--no-cache"], cwd=where, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n{statement}  # noqa\n")


def test_the_code_keeps_every_contract():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "BROKEN" not in result.stdout


def test_portals_importing_notifications_breaks_the_layers(copy):
    add_import(copy / "portals" / "tokens" / "state.py", "import notifications.models")
    result = lint(copy)
    assert result.returncode != 0
    assert "portals.tokens.state -> notifications.models" in result.stdout


def test_a_cycle_inside_a_package_breaks_the_contract(copy):
    add_import(copy / "portals" / "tokens" / "journal.py", "from portals.tokens import sweep")
    result = lint(copy)
    assert result.returncode != 0
    assert "No import cycles between the modules of a package BROKEN" in result.stdout


def test_importing_a_task_module_breaks_the_contract(copy):
    add_import(copy / "portals" / "tokens" / "sweep.py", "from portals.tokens import tasks")
    result = lint(copy)
    assert result.returncode != 0
    assert "Task modules sit on top: nothing imports them BROKEN" in result.stdout
