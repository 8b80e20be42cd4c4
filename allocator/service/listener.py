"""The listening socket that several server processes share, dealing connections out evenly.

Every worker watches the one listening socket, and a new connection wakes them all. asyncio's
accept loop then takes every connection waiting (up to the backlog) in one turn, so the worker
that wakes first takes a whole burst: 50 clients opening their keep-alive connections at once
all land on one worker, and stay there while the other worker idles (measured: 99% of a core
against 17% with four workers). :class:`FairListener` accepts one connection per turn of the
event loop; the other connections of the burst stay queued for the other workers, and a worker
busy solving does not take any. The kernel's queue does the balancing; nothing is shared.
"""

from __future__ import annotations

import asyncio
import socket


class FairListener(socket.socket):
    """A listening socket that accepts at most one connection per turn of its event loop."""

    _resting = False

    @classmethod
    def of(cls, sock: socket.socket) -> "FairListener":
        """``sock`` (which is closed) as a FairListener on the same descriptor."""
        return cls(sock.family, sock.type, sock.proto, fileno=sock.detach())

    def accept(self):
        # asyncio calls accept() until it raises BlockingIOError: after one connection, rest until
        # the loop has turned once (and served what it has), so that a sibling may take the next
        if self._resting:
            raise BlockingIOError
        conn = super().accept()
        self._resting = True
        asyncio.get_running_loop().call_soon(self._wake)
        return conn

    def _wake(self) -> None:
        self._resting = False

    def __reduce__(self):
        # passed to spawned worker processes: multiprocessing's own socket reducer is registered
        # for socket.socket exactly, so a subclass says how to travel (a duplicated descriptor)
        from multiprocessing.reduction import DupFd

        return _rebuild, (DupFd(self.fileno()), self.family, self.type, self.proto)


def _rebuild(df, family, type_, proto) -> FairListener:
    return FairListener(family, type_, proto, fileno=df.detach())
