"""Each package's public names, and the import contracts that make them the only way in.

Other packages reach a package only through what its ``__init__`` exports (``.importlinter``,
checked by ``make lint`` and here): these tests check that what is exported is real, defined in
that package, and listed once.
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGES = ("signals", "streams", "storage", "alerts", "dashboards")
ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("package", PACKAGES)
def test_exported_names_resolve_and_belong_to_their_package(package: str) -> None:
    module = importlib.import_module(package)
    names = list(module.__all__)
    assert len(names) == len(set(names)), "a name is listed twice"
    assert len(names) >= 10
    for name in names:
        value = getattr(module, name)  # raises if a listed name is not there
        if inspect.isclass(value) or inspect.isfunction(value):  # not aliases or constants
            origin = value.__module__
            assert origin.split(".")[0] == package, f"{package}.{name} comes from {origin}"


def test_import_contracts_hold() -> None:
    """The layering of DESIGN.md, no I/O in signals, no torch in storage, no environment below
    telltale, and public names only across packages (``.importlinter``)."""
    lint_imports = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 broken" in result.stdout
    contracts = (ROOT / ".importlinter").read_text()
    for package in PACKAGES:
        assert f"[importlinter:contract:public-{package}]" in contracts
