"""``allocator keys`` and ``allocator serve`` (through their own modules, as the CLI registers them)."""

from __future__ import annotations

import argparse

import pytest

from allocator.errors import SpecError
from allocator.service.store import Store
from test_service_support import keys_cli


def test_keys_create_prints_the_key_alone_on_its_last_line_and_stores_only_its_hash(tmp_path):
    out = keys_cli("--data-dir", str(tmp_path), "create", "--workspace", "team-x", "--read-only", "--label", "bi")
    key = out.strip().splitlines()[-1]
    assert key.startswith("alk_") and " " not in key
    store = Store(f"sqlite:///{tmp_path / 'allocator.db'}")
    rec = store.authenticate(key)
    assert rec.workspace == "team-x" and rec.read_only and rec.label == "bi"
    with store.engine.connect() as conn:
        stored = conn.exec_driver_sql("SELECT secret_hash FROM api_keys").scalars().all()
    assert stored and key not in stored and all(len(h) == 64 for h in stored)
    listing = keys_cli("--data-dir", str(tmp_path), "list")
    assert rec.id in listing and key not in listing
    keys_cli("--data-dir", str(tmp_path), "revoke", rec.id)
    assert store.authenticate(key) is None
    store.dispose()


def test_keys_create_refuses_a_bad_workspace_name(tmp_path):
    with pytest.raises(SpecError, match="--workspace"):
        keys_cli("--data-dir", str(tmp_path), "create", "--workspace", "a b")


def test_serve_defaults_to_the_loopback_address():
    from allocator.cli import serve_cmd

    parser = argparse.ArgumentParser()
    serve_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 8000)
