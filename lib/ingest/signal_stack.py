"""The alternate signal stack of the calling thread, put back as it was after a Ray driver has come and gone.

ray.init installs Ray's failure signal handlers (SIGSEGV, SIGABRT, ...), which run on an alternate signal stack of
their own that it gives the calling thread with sigaltstack(2); ray.shutdown takes the handlers away again but leaves
that stack in place. Every handler installed with SA_ONSTACK, as CPython installs each Python-level handler (the
SIGCHLD handler of PyTorch's DataLoader among them), then runs on memory that no longer belongs to anyone. The
test process, a Ray driver six times over, died of it: SIGSEGV with si_code SI_KERNEL (the kernel could not
deliver a signal) while it waited for a child it had killed (read off its core dump; about one full run in two).
A build that goes on after its Ray stage, or a server, must not inherit that.

Linux and glibc only (sigaltstack through ctypes); elsewhere this does nothing.
"""
from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)


class _Stack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc if hasattr(libc, "sigaltstack") else None
    except OSError:
        return None


def current_stack() -> _Stack | None:
    """The calling thread's alternate signal stack (ss_flags SS_DISABLE when it has none), or None off Linux."""
    libc, stack = _libc(), _Stack()
    if libc is None or libc.sigaltstack(None, ctypes.byref(stack)) != 0:
        return None
    return stack


def restore_stack(saved: _Stack | None) -> None:
    """Give the calling thread back the alternate signal stack that current_stack() read before Ray came."""
    libc = _libc()
    if saved is None or libc is None:
        return
    saved.ss_flags &= 2  # SS_DISABLE is the only flag sigaltstack takes back
    if libc.sigaltstack(ctypes.byref(saved), None) != 0:
        log.warning("could not restore the alternate signal stack (errno %d)", ctypes.get_errno())


_OWN: list[tuple[ctypes.Array[ctypes.c_char], _Stack]] = []  # never freed: a stack in use must outlive its thread


def keep_own_stack(size: int = 1 << 20) -> None:
    """Make the calling thread's alternate signal stack one this module owns and never frees (1 MiB).

    OpenVINO's CPU plugin gives the thread that loads it an alternate stack of its own (20,144 bytes here,
    read with sigaltstack after the first encode), replacing faulthandler's. The test process, on a machine
    with AMX, then died as it did of Ray's stack: SIGSEGV with si_code SI_KERNEL while it slept in a fixture
    and a SIGCHLD came (core dump of a full run). A stack we own cannot go away under a handler.
    """
    libc, current = _libc(), current_stack()
    if libc is None or current is None:
        return
    if not _OWN:
        buffer = ctypes.create_string_buffer(size)
        _OWN.append((buffer, _Stack(ctypes.cast(buffer, ctypes.c_void_p).value, 0, size)))
    own = _OWN[0][1]
    if current.ss_sp != own.ss_sp and libc.sigaltstack(ctypes.byref(own), None) != 0:
        log.warning("could not install an alternate signal stack (errno %d)", ctypes.get_errno())
