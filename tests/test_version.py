"""``allocator --version``: the version the project declares (pyproject.toml), from the installed metadata."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import allocator
from allocator.cli import main

ROOT = Path(__file__).resolve().parents[1]
DECLARED = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def test_version_flag_prints_the_declared_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"allocator {DECLARED}"


def test_version_from_the_console_script():
    out = subprocess.run([sys.executable, "-m", "allocator", "--version"], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == f"allocator {DECLARED}"


def test_package_version_agrees():
    assert allocator.__version__ == DECLARED


def test_falls_back_to_the_package_version_without_metadata(monkeypatch):
    import importlib.metadata

    from allocator import cli

    def missing(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    assert cli.version() == allocator.__version__
