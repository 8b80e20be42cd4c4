"""The two statements of every request on a SQLite store, on plain ``sqlite3``, and its WAL checkpoints.

Every plan request looks its key up and inserts one plan. Through SQLAlchemy each cost about
0.1 ms more than the statement (a pooled connection checked out and reset, parameters processed,
a result object built), a tenth of what a small plan costs in all. :class:`SqliteLane` runs the
same two statements on one ``sqlite3`` connection per thread, configured as the engine's are, and
writes the same text SQLAlchemy would (its ``DateTime`` format), so every other read goes through
SQLAlchemy unchanged.

Two stalls of a SQLite writer are moved off the request path:

* **checkpoints**: by default the commit that grows the write-ahead log past 1,000 pages copies
  the log into the database and syncs it, 10-35 ms every couple of hundred plans, while every
  other request of that server process waits. Here the lane's connections never checkpoint; a
  background thread does, ten times a second when plans were written (``sqlite3`` lets go of the
  GIL while SQLite works, so requests go on meanwhile; small, frequent copies kept the latency's
  tail lower than one a second: p99 80 ms against 104 ms, 50 clients in a closed loop).
* **lock waits**: SQLite's busy handler sleeps at least 1 ms, then 2, 5, 10 ms..., when another
  process holds the write lock, which it does for about a tenth of a millisecond a plan. The lane
  takes the lock without SQLite's handler and retries every 0.1 ms, up to the same 30 s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy.dialects import sqlite
from sqlalchemy.sql import ClauseElement

BUSY_SECONDS = 30.0
"""How long a write waits for another process's write lock (the engine's ``timeout``)."""

CHECKPOINT_SECONDS = 0.1
"""How often the background thread copies the write-ahead log into the database, when plans were written."""

RESTART_FRAMES = 4096
"""A log longer than this (frames of 4 kB) is started over after the next checkpoint (see :meth:`SqliteLane.checkpoint`)."""

RESTART_WAIT_MS = 200
"""How long a restarting checkpoint waits for a writer or reader to finish before it tries again later."""

_RETRY_SECONDS = 0.0001

def sqlite_text(t: datetime) -> str:
    """``t`` as SQLAlchemy's SQLite ``DateTime`` stores it (naive, microseconds always written)."""
    return t.strftime("%Y-%m-%d %H:%M:%S.%f")


def lane_path(url: str) -> str | None:
    """The database file of a SQLite URL, or None when the lane cannot serve it (in memory, URI options)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[-1] if "///" in url else ""
    if not path or path == ":memory:" or "?" in path or path.startswith("file:"):
        return None
    return path


def configure(conn: sqlite3.Connection) -> None:
    """The pragmas every connection to the store gets (the engine's connect hook runs this too)."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")


def sql_of(statement: ClauseElement) -> str:
    """The SQL text SQLAlchemy's SQLite dialect writes for ``statement``, with ``:name`` parameters."""
    return str(statement.compile(dialect=sqlite.dialect(paramstyle="named")))


@contextmanager
def _busy_timeout(conn: sqlite3.Connection, ms: int) -> Iterator[None]:
    """SQLite's busy handler waits at most ``ms`` inside the block, then ``BUSY_SECONDS`` again."""
    conn.execute(f"PRAGMA busy_timeout={ms}")
    try:
        yield
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(BUSY_SECONDS * 1000)}")


class SqliteLane:
    """Key lookups and plan inserts on ``path``, one ``sqlite3`` connection per thread; checkpoints in the background.

    ``key``, ``latest`` and ``insert`` are the store's own SQLAlchemy statements (a key by
    ``:key_id``; the latest version of ``:w``, ``:s``; a plan row), run here as the SQL text they
    compile to, so both routes run one definition.
    """

    def __init__(self, path: str, key: ClauseElement, latest: ClauseElement, insert: ClauseElement):
        self.path = path
        self._key, self._latest, self._insert = sql_of(key), sql_of(latest), sql_of(insert)
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._written = threading.Event()
        self._closed = threading.Event()
        self._checkpointer: threading.Thread | None = None

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # autocommit (isolation_level None): the lane writes BEGIN and COMMIT itself
            conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
            configure(conn)
            conn.execute("PRAGMA wal_autocheckpoint=0")
            with self._lock:
                self._all.append(conn)
            self._local.conn = conn
        return conn

    def key_row(self, key_id: str) -> dict[str, Any] | None:
        """The ``api_keys`` row of ``key_id`` (dates as datetimes, as SQLAlchemy reads them), or None."""
        cur = self._conn().execute(self._key, {"key_id": key_id})
        row = cur.fetchone()
        if row is None:
            return None
        out = dict(zip((d[0] for d in cur.description), row))
        out["read_only"] = bool(out["read_only"])
        out["created_at"], out["revoked_at"] = _when(out["created_at"]), _when(out["revoked_at"])
        return out

    def insert_plan(self, row: dict[str, Any], created_at: datetime) -> None:
        """Insert ``row`` as its scenario's next version (sets ``row["version"]`` and ``row["created_at"]``)."""
        conn = self._conn()
        self._begin_immediate(conn)
        try:
            latest = conn.execute(self._latest, {"w": row["workspace"], "s": row["scenario"]}).fetchone()[0]
            row["version"] = int(latest or 0) + 1
            row["created_at"] = created_at
            conn.execute(self._insert, {**row, "created_at": sqlite_text(created_at)})
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        self._wrote()

    @staticmethod
    def _begin_immediate(conn: sqlite3.Connection) -> None:
        """Take the write lock, polling every 0.1 ms while another process holds it (up to ``BUSY_SECONDS``)."""
        deadline = None
        with _busy_timeout(conn, 0):
            while True:
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    return
                except sqlite3.OperationalError as exc:
                    if "locked" not in str(exc) and "busy" not in str(exc):
                        raise
                    now = time.monotonic()
                    deadline = deadline or now + BUSY_SECONDS
                    if now > deadline:
                        raise
                    time.sleep(_RETRY_SECONDS)

    # ------------------------------------------------------------------ checkpoints
    def _wrote(self) -> None:
        if self._checkpointer is None:
            with self._lock:
                if self._checkpointer is None and not self._closed.is_set():
                    self._checkpointer = threading.Thread(target=self._checkpoint_loop, daemon=True,
                                                          name="allocator-store-checkpoint")
                    self._checkpointer.start()
        self._written.set()

    def _checkpoint_loop(self) -> None:
        conn = sqlite3.connect(self.path, timeout=BUSY_SECONDS, isolation_level=None, check_same_thread=False)
        try:
            configure(conn)
            conn.execute(f"PRAGMA journal_size_limit={RESTART_FRAMES * 4096 * 2}")
            while not self._closed.wait(CHECKPOINT_SECONDS):
                if self._written.is_set():
                    self._written.clear()
                    _busy, frames, _copied = self.checkpoint(conn)
                    if frames > RESTART_FRAMES:
                        self.checkpoint(conn, "RESTART")
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection | None = None, mode: str = "PASSIVE") -> tuple[int, int, int]:
        """Copy what the write-ahead log holds into the database; SQLite's ``(busy, frames in the log, frames copied)``.

        ``PASSIVE`` waits for no one. Under a steady stream of plans that never empties the log:
        some plan is always written while the copy runs, so no writer finds it all copied, which
        is when SQLite starts the log over (measured: 1.4 GB after 35 s). ``RESTART`` keeps new
        writers out for the few frames left and the database's sync (about a millisecond), and
        makes the next writer start the log over.
        """
        conn = conn or self._conn()
        try:
            with _busy_timeout(conn, RESTART_WAIT_MS if mode != "PASSIVE" else int(BUSY_SECONDS * 1000)):
                return tuple(conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone())
        except sqlite3.Error:  # the next round tries again; a failed checkpoint loses nothing
            return (1, -1, -1)

    def close(self) -> None:
        """Stop the checkpoints, copy the log once more and close every connection of the lane."""
        self._closed.set()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=BUSY_SECONDS)
        with self._lock:
            conns, self._all = self._all, []
        if conns:
            self.checkpoint(conns[0])
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing a connection another thread is using
                pass
        self._local = threading.local()


def _when(value: Any) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)
