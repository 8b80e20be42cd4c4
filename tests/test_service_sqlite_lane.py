"""The SQLite lane (plain sqlite3 for key lookups and plan inserts) against SQLAlchemy's route."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from allocator.service.store import Store
from allocator.service.store import sqlite_lane
from allocator.service.store.sqlite_lane import SqliteLane, configure, lane_path
from allocator.service.store.store import _ADD_PLAN, _KEY_BY_ID, _LATEST_VERSION

SUMMARY = {"solver": "exact", "status": "optimal", "optimality_gap": 0.0, "solve_seconds": 0.25, "net_value": 1.5}
CELLS = [{"segment": "a", "task": "retention", "spend": 1.0}, {"segment": "b", "task": "acquisition", "spend": 2.5}]


def _stores(tmp_path: Path) -> tuple[Store, Store]:
    """The same history on a store with the lane and on one without (SQLAlchemy alone)."""
    lane, plain = Store(f"sqlite:///{tmp_path / 'lane.db'}"), Store(f"sqlite:///{tmp_path / 'plain.db'}")
    assert lane._lane is not None
    plain._lane.close()
    plain._lane = None
    return lane, plain


def _without(record: dict, *names: str) -> dict:
    return {k: v for k, v in record.items() if k not in names}


def test_lane_writes_and_reads_what_sqlalchemy_does(tmp_path):
    lane, plain = _stores(tmp_path)
    try:
        out = {}
        for name, st in (("lane", lane), ("plain", plain)):
            key, secret = st.create_key("w", label="k")
            other, other_secret = st.create_key("w", read_only=True)
            st.revoke_key(other.id)
            a = st.add_plan("w", "s", {"budget": 1}, "h1", "9", key.id, SUMMARY, CELLS)
            b = st.add_plan("w", "s", {"budget": 2}, "h2", "9", key.id, SUMMARY, CELLS[:1])
            c = st.add_plan("w", "t", {"budget": 3}, "h3", "9", key.id, SUMMARY, CELLS)
            raw = st.add_plan("w", "s", {"budget": 4}, "h4", "9", key.id, SUMMARY, CELLS, raw=True)
            assert (a["version"], b["version"], c["version"]) == (1, 2, 1)
            fetched = st.get_plan("w", a["id"], with_scenario=True)
            # what add_plan answered is what a later read gives, to the microsecond
            assert _without(fetched, "scenario_data") == a
            assert st.get_plan("w", raw[7:39].decode(), raw=True) == raw
            texts = [r[0] for r in sqlite3.connect(st.url.split("///")[1]).execute("SELECT created_at FROM plans")]
            out[name] = {"auth": st.authenticate(secret), "revoked": st.authenticate(other_secret),
                         "versions": [_without(v, "id", "created_at", "created_by") for v in st.list_versions("w", "s")],
                         "scenarios": [_without(s, "latest_at") for s in st.list_scenarios("w")],
                         "plan": _without(fetched, "id", "created_at", "created_by"), "texts": texts}
        assert out["lane"]["revoked"] is None and out["plain"]["revoked"] is None
        assert out["lane"]["auth"].workspace == "w" and not out["lane"]["auth"].read_only
        assert _without(vars(out["lane"]["auth"]), "id", "created_at") == \
            _without(vars(out["plain"]["auth"]), "id", "created_at")
        for what in ("versions", "scenarios", "plan"):
            assert out["lane"][what] == out["plain"][what], what
        assert [v["version"] for v in out["lane"]["versions"]] == [1, 2, 3]
        # the same column text as SQLAlchemy's DateTime: naive, microseconds always written
        pattern = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{6}")
        assert all(pattern.fullmatch(t) for t in out["lane"]["texts"] + out["plain"]["texts"])
    finally:
        lane.dispose()
        plain.dispose()


def test_lane_datetime_text_round_trips():
    t = datetime(2026, 1, 2, 3, 4, 5, 0, tzinfo=timezone.utc)
    assert sqlite_lane.sqlite_text(t) == "2026-01-02 03:04:05.000000"
    assert sqlite_lane._when("2026-01-02 03:04:05.000000") == t.replace(tzinfo=None)


@pytest.mark.parametrize("url, path", [
    ("sqlite:////tmp/x/s.db", "/tmp/x/s.db"), ("sqlite:///rel/s.db", "rel/s.db"), ("sqlite:///:memory:", None),
    ("sqlite://", None), ("sqlite:///s.db?mode=ro", None), ("postgresql://u@h/db", None)])
def test_lane_serves_plain_files_only(url, path):
    assert lane_path(url) == path


def test_commits_leave_checkpoints_to_the_background(tmp_path, monkeypatch):
    """A commit never copies the log into the database (SQLite's default would, past 1,000 pages)."""
    monkeypatch.setattr(sqlite_lane, "CHECKPOINT_SECONDS", 3600.0)
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    key, _ = st.create_key("w")
    db = tmp_path / "s.db"
    size0 = db.stat().st_size
    big = [{"segment": f"s{i}", "note": "x" * 200} for i in range(40)]   # about 10 kB a plan
    for _ in range(600):                                                # about 1,500 pages of log
        st.add_plan("w", "s", {"budget": 1}, "h", "9", key.id, SUMMARY, big, raw=True)
    wal = Path(f"{db}-wal")
    assert wal.stat().st_size > 1200 * 4096
    assert db.stat().st_size == size0
    busy, frames, copied = st._lane.checkpoint()
    assert busy == 0 and frames == copied > 1000
    assert db.stat().st_size > 1000 * 4096
    st.dispose()


def test_background_thread_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setattr(sqlite_lane, "CHECKPOINT_SECONDS", 0.05)
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    key, _ = st.create_key("w")
    size0 = (tmp_path / "s.db").stat().st_size
    big = [{"note": "x" * 4000} for _ in range(10)]
    for _ in range(20):
        st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, big)
    deadline = time.monotonic() + 10
    while (tmp_path / "s.db").stat().st_size <= size0 + 100 * 4096 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert (tmp_path / "s.db").stat().st_size > size0 + 100 * 4096
    st.dispose()
    assert not st._lane._checkpointer.is_alive()


def test_insert_waits_for_another_writer_then_goes_on(tmp_path, monkeypatch):
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    key, _ = st.create_key("w")
    other = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(0.2, lambda: other.execute("COMMIT")).start()
    t0 = time.monotonic()
    rec = st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, CELLS)
    assert 0.19 < time.monotonic() - t0 < 5 and rec["version"] == 1
    # held past the wait allowed: the write fails, and the lane's connection is usable afterwards
    monkeypatch.setattr(sqlite_lane, "BUSY_SECONDS", 0.1)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, CELLS)
    other.execute("COMMIT")
    assert st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, CELLS)["version"] == 2
    other.close()
    st.dispose()


def test_lane_rolls_back_a_failed_insert(tmp_path):
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    # an unknown key breaks the foreign key: nothing is stored, and the next insert works
    with pytest.raises(sqlite3.IntegrityError):
        st.add_plan("w", "s", {}, "h", "9", "nokey", SUMMARY, CELLS)
    key, _ = st.create_key("w")
    assert st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, CELLS)["version"] == 1
    assert not st._lane._conn().in_transaction
    st.dispose()


def test_lane_is_one_connection_per_thread(tmp_path):
    first = sqlite3.connect(tmp_path / "x.db")
    configure(first)  # as the store's migration leaves it: in WAL mode already
    first.close()
    lane = SqliteLane(str(tmp_path / "x.db"), _KEY_BY_ID, _LATEST_VERSION, _ADD_PLAN)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(id(lane._conn()))) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 3 and lane._conn() is lane._conn()
    lane.close()



def _longest_log(tmp_path: Path, monkeypatch, restart_frames: int) -> int:
    """Longest write-ahead log seen while 3,000 plans are written without pause, checkpoints running."""
    monkeypatch.setattr(sqlite_lane, "CHECKPOINT_SECONDS", 0.005)
    monkeypatch.setattr(sqlite_lane, "RESTART_FRAMES", restart_frames)
    tmp_path.mkdir()
    st = Store(f"sqlite:///{tmp_path / 's.db'}")
    key, _ = st.create_key("w")
    big = [{"note": "x" * 1000} for _ in range(10)]   # about 3 pages a plan, 35 MB in all
    wal, longest = Path(f"{tmp_path / 's.db'}-wal"), 0
    for i in range(3000):
        st.add_plan("w", "s", {}, "h", "9", key.id, SUMMARY, big, raw=True)
        time.sleep(0.0003)  # a server parses and solves between two inserts: the checkpoints get their turn
        if i % 50 == 0:
            longest = max(longest, wal.stat().st_size if wal.exists() else 0)
    st.dispose()
    return longest


def test_the_log_is_started_over_under_a_steady_stream_of_plans(tmp_path, monkeypatch):
    """Plans written without pause: passive checkpoints alone let the log grow (no writer ever finds it
    all copied); a restarting checkpoint past RESTART_FRAMES keeps it a fraction of that (measured
    in the server: 22 MB, against 1.4 GB after 35 s)."""
    passive = _longest_log(tmp_path / "passive", monkeypatch, 10**9)
    restarted = _longest_log(tmp_path / "restart", monkeypatch, 100)
    assert passive > 20 * 1024 * 1024, passive
    assert restarted < 0.6 * passive, (restarted, passive)
