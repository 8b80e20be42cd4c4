"""The shared listening socket deals a burst of connections out to every server process.

Two processes serve one :class:`~allocator.service.listener.FairListener` with asyncio, as the
workers of ``allocator serve --workers 2`` do; each answer takes 20 ms of blocking work (a solve)
and names the process. Twenty clients connect at once before either process accepts, so all twenty
wait in the kernel's queue: asyncio's own accept loop would hand them all to whichever process
wakes first. Each process must get a fair part. (That the listener travels to spawned workers is
shown by every test that starts a real multi-worker server, tests/test_service_workers.py.)
"""

from __future__ import annotations

import asyncio
import collections
import multiprocessing
import os
import socket
import time

import pytest

from allocator.service import listener as listener_module
from allocator.service.listener import FairListener

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def _serve(listener: socket.socket, ready, hold: bool = False) -> None:
    """Answer each message with this process's pid: after 20 ms of blocking work, closing the
    connection; or, with ``hold``, at once, keeping it open (a keep-alive client)."""
    class Answer(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            if not hold:
                time.sleep(0.02)  # the event loop is blocked, as by a solve
            self.transport.write(str(os.getpid()).encode())
            if not hold:
                self.transport.close()

    if hold:
        listener.take_slot()  # as each spawned worker of `allocator serve` does when it starts

    async def main():
        await asyncio.get_running_loop().create_server(Answer, sock=listener)
        ready.send(os.getpid())
        await asyncio.sleep(60)

    asyncio.run(main())


def _who_answers(listener: socket.socket, clients: int = 20) -> collections.Counter:
    port = listener.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    pipes, procs = [], []
    try:
        for _ in range(2):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(listener, theirs), daemon=True)
            p.start()
            pipes.append(mine)
            procs.append(p)
        pids = [c.recv() for c in pipes if c.poll(30)]
        assert len(pids) == 2, "the serving processes did not start"
        conns = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(clients)]
        for c in conns:
            c.sendall(b"go")
        answers = collections.Counter()
        for c in conns:
            answers[int(c.recv(64))] += 1
            c.close()
        assert set(answers) <= set(pids)
        return answers
    finally:
        for p in procs:
            p.kill()
            p.join(10)


def test_a_burst_of_connections_is_shared_by_both_processes():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    listener = FairListener.of(sock)
    try:
        answers = _who_answers(listener)
    finally:
        listener.close()
    assert sum(answers.values()) == 20
    # one process alone would take all 20; each blocked 20 ms an answer, the other takes its turn
    assert len(answers) == 2 and min(answers.values()) >= 5, answers


def test_the_listener_keeps_the_socket_it_replaces():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    where = sock.getsockname()
    listener = FairListener.of(sock)
    try:
        assert sock.fileno() == -1  # detached: one descriptor, owned by the listener
        assert listener.getsockname() == where and isinstance(listener, socket.socket)
    finally:
        listener.close()


def _held_by(listener: socket.socket, clients: int, waves: int = 1) -> list[collections.Counter]:
    """Open ``clients`` connections at once, ``waves`` times: who holds the open ones after each wave.

    After a wave, every connection of the first process is closed, so the next wave should go
    to it until both hold as many.
    """
    port = listener.getsockname()[1]
    ctx = multiprocessing.get_context("fork")
    pipes, procs, conns, out = [], [], {}, []
    try:
        for _ in range(2):
            mine, theirs = ctx.Pipe()
            p = ctx.Process(target=_serve, args=(listener, theirs, True), daemon=True)
            p.start()
            pipes.append(mine)
            procs.append(p)
        pids = [c.recv() for c in pipes if c.poll(30)]
        assert len(pids) == 2, "the serving processes did not start"
        for _ in range(waves):
            for c in [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(clients)]:
                conns[c] = None
            for c in conns:
                c.sendall(b"?")
                conns[c] = int(c.recv(64))
            out.append(collections.Counter(conns.values()))
            for c in [c for c, pid in conns.items() if pid == pids[0]]:
                c.close()
                del conns[c]
            time.sleep(0.5)  # the process sees them close
        return out
    finally:
        for c in conns:
            c.close()
        for p in procs:
            p.kill()
            p.join(10)


def test_keep_alive_connections_are_held_evenly(monkeypatch):
    """With the board, each process holds as many open connections as the other, also after some close."""
    monkeypatch.setattr(listener_module, "PATIENCE", 30.0)  # the forked processes inherit it
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    listener = FairListener.of(sock, processes=2)
    try:
        first, second = _held_by(listener, 20, waves=2)
    finally:
        listener.close()
    assert sorted(first.values()) == [10, 10], first
    # the first process's 10 closed; of 20 new ones it takes 15, and each holds 15
    assert sorted(second.values()) == [15, 15], second


def test_a_spawned_worker_is_on_the_board_before_its_first_accept():
    """A worker rebuilt from the pickle (as ``allocator serve`` spawns them) holds a slot at once."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    listener = FairListener.of(sock, processes=2)

    class Descriptor:  # what multiprocessing's DupFd hands over in the spawned process
        def detach(self):
            return os.dup(listener.fileno())

    worker = listener_module._rebuild(Descriptor(), listener.family, listener.type, listener.proto, listener._board)
    try:
        cells = list(listener._board.cells)
        assert cells[0::2].count(os.getpid()) == 1 and cells[1::2] == [0, 0]
        # another live process holding no connection makes this one, holding one, wait
        listener._board.add(worker._slot, 1)
        other = 1 - worker._slot
        listener._board.cells[2 * other] = os.getppid()
        assert listener._board.fewer_elsewhere(worker._slot)
        listener._board.add(other, 1)
        assert not listener._board.fewer_elsewhere(worker._slot)
    finally:
        worker.close()
        listener.close()
