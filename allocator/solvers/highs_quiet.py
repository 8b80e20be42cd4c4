"""HiGHS instances that print nothing: one place every highspy user goes through.

HiGHS writes a banner ("Running HiGHS 1.16.0 ... Copyright ...") to the process's
standard output from C++ the first time a ``Highs`` object is constructed, before
any option can be set (highspy 1.16 offers no constructor argument to prevent it).
A command's stdout must carry only what was asked for (``--quiet``: nothing), so
the first construction runs with file descriptor 1 pointed at a temporary file;
what HiGHS wrote there is passed to ``logging`` at DEBUG. Later constructions
print no banner, and every instance made here has ``output_flag`` off, so HiGHS's
own log never reaches the terminal either.

Other libraries that build HiGHS objects themselves (Pyomo's HiGHS interface) call
:func:`absorb_banner` first, which has the same effect.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import tempfile
import threading

from ..errors import SolverUnavailableError

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_absorbed = False


def highspy():
    """The ``highspy`` module, or :class:`SolverUnavailableError` naming what to install."""
    try:
        import highspy as hs
    except ImportError as exc:  # pragma: no cover - a dependency
        raise SolverUnavailableError(f"this solver needs highspy (pip install highspy): {exc}") from None
    return hs


def _flush_c_stdio() -> None:
    # HiGHS writes through C stdio; its buffer must be emptied while fd 1 still points at the file
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - platforms without a C library handle
        pass


def absorb_banner() -> None:
    """Construct one ``Highs`` with stdout redirected, so that HiGHS's once-per-process banner is spent.

    Safe to call any number of times and from several threads; only the first call
    does anything.
    """
    global _absorbed
    if _absorbed:
        return
    hs = highspy()
    with _lock:
        if _absorbed:
            return
        try:
            sys.stdout.flush()
        except (AttributeError, ValueError):  # pragma: no cover - a closed or replaced stdout
            pass
        try:
            saved = os.dup(1)
        except OSError:  # pragma: no cover - no fd 1 at all: nothing can reach the terminal
            hs.Highs()
            _absorbed = True
            return
        with tempfile.TemporaryFile(mode="w+b") as sink:
            try:
                os.dup2(sink.fileno(), 1)
                try:
                    hs.Highs()
                finally:
                    _flush_c_stdio()
                    os.dup2(saved, 1)
            finally:
                os.close(saved)
            sink.seek(0)
            banner = sink.read().decode("utf-8", "replace").strip()
        _absorbed = True
    if banner:
        logger.debug("HiGHS: %s", banner)


def new_highs():
    """A ``highspy.Highs`` that prints nothing (banner absorbed, ``output_flag`` off)."""
    absorb_banner()
    h = highspy().Highs()
    h.setOptionValue("output_flag", False)
    return h
