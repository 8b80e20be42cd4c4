"""The listening socket that several server processes share, dealing connections out evenly.

Every worker watches the one listening socket, and a new connection wakes them all. asyncio's
accept loop then takes every connection waiting (up to the backlog) in one turn, so the worker
that wakes first takes a whole burst: 50 clients opening their keep-alive connections at once
all land on one worker, and stay there while the other worker idles (measured: 99% of a core
against 17% with four workers). :class:`FairListener` accepts one connection per turn of the
event loop, so a worker busy solving does not take any.

That alone still let the worker that woke first take more (32 and 17 of 49 connections, measured):
a keep-alive connection stays with its worker, and a client of the worker with twice the
connections waits twice as long for each answer. So the workers also keep a :class:`Board` in
shared memory of the connections each holds, and one that holds more than another live worker
lets the next connection wait for that worker, up to :data:`PATIENCE` seconds (a worker in the
middle of a long solve does not hold the others up for longer).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
import time

PATIENCE = 0.002
"""How long a worker leaves a waiting connection to a sibling holding fewer (seconds)."""


class Board:
    """Connections held by each server process, in shared memory: ``slots`` pairs of (pid, count)."""

    def __init__(self, slots: int):
        self.slots = slots
        self.cells = multiprocessing.get_context("spawn").Array("q", 2 * slots)

    def claim(self) -> int:
        """A slot for this process: a free one, or one whose process is gone (its count starts at 0)."""
        pid = os.getpid()
        with self.cells.get_lock():
            cells = self.cells
            for i in range(self.slots):
                if cells[2 * i] == pid:
                    return i
            for i in range(self.slots):
                if cells[2 * i] == 0 or not _alive(cells[2 * i]):
                    cells[2 * i], cells[2 * i + 1] = pid, 0
                    return i
        return -1  # more processes than slots: this one is not counted (and never waits)

    def add(self, slot: int, n: int) -> None:
        with self.cells.get_lock():
            self.cells[2 * slot + 1] += n

    def fewer_elsewhere(self, slot: int) -> bool:
        """True when a live sibling holds fewer connections than ``slot``'s process."""
        cells = self.cells
        mine = cells[2 * slot + 1]
        for i in range(self.slots):
            if i != slot and cells[2 * i] != 0 and cells[2 * i + 1] < mine and _alive(cells[2 * i]):
                return True
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - a process of another user took the pid
        return True
    return True


class FairListener(socket.socket):
    """A listening socket that accepts at most one connection per turn of its event loop.

    With a :class:`Board` (``processes`` > 1), a process holding more connections than a sibling
    leaves the next one to it for up to :data:`PATIENCE` seconds.
    """

    _resting = False
    _board: Board | None = None
    _slot: int | None = None
    _slot_pid = 0
    _waiting_since = 0.0

    @classmethod
    def of(cls, sock: socket.socket, processes: int = 1) -> "FairListener":
        """``sock`` (which is closed) as a FairListener on the same descriptor, shared by ``processes``."""
        listener = cls(sock.family, sock.type, sock.proto, fileno=sock.detach())
        if processes > 1:
            listener._board = Board(processes)
        return listener

    def accept(self):
        # asyncio calls accept() until it raises BlockingIOError: after one connection, rest until
        # the loop has turned once (and served what it has), so that a sibling may take the next
        if self._resting:
            raise BlockingIOError
        board, slot = self._board, self.take_slot()
        if slot is not None and board.fewer_elsewhere(slot):
            now = time.monotonic()
            if not self._waiting_since:
                self._waiting_since = now
            if now - self._waiting_since < PATIENCE:
                self._rest()
                raise BlockingIOError
        fd, addr = self._accept()
        self._waiting_since = 0.0
        self._rest()
        if slot is None:
            return socket.socket(self.family, self.type, self.proto, fileno=fd), addr
        board.add(slot, 1)
        conn = _Held(self.family, self.type, self.proto, fileno=fd)
        conn._board, conn._slot = board, slot
        return conn, addr

    def take_slot(self) -> int | None:
        """This process's slot on the board (taken on the first call in each process); None without one.

        A worker calls it as it starts (spawned workers do, as they are rebuilt): a sibling that
        won every race for the socket so far must already see it, holding none, and leave it some.
        """
        if self._board is None:
            return None
        if self._slot_pid != os.getpid():  # first call in this process (spawned or forked)
            self._slot, self._slot_pid = self._board.claim(), os.getpid()
        return None if self._slot is None or self._slot < 0 else self._slot

    def _rest(self) -> None:
        self._resting = True
        asyncio.get_running_loop().call_soon(self._wake)

    def _wake(self) -> None:
        self._resting = False

    def __reduce__(self):
        # passed to spawned worker processes: multiprocessing's own socket reducer is registered
        # for socket.socket exactly, so a subclass says how to travel (a duplicated descriptor)
        from multiprocessing.reduction import DupFd

        return _rebuild, (DupFd(self.fileno()), self.family, self.type, self.proto, self._board)


class _Held(socket.socket):
    """An accepted connection that leaves its process's count on the board when closed."""

    _board: Board | None = None
    _slot = -1

    def close(self) -> None:
        board, self._board = self._board, None
        if board is not None:
            board.add(self._slot, -1)
        super().close()


def _rebuild(df, family, type_, proto, board) -> FairListener:
    listener = FairListener(family, type_, proto, fileno=df.detach())
    listener._board = board
    listener.take_slot()
    return listener
