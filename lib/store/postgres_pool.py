"""Connections to the store database for a server: one psycopg pool per process, made after the fork.

A process forked from one that held a pool must not share its sockets or its pool's threads, so the pool
is closed before every os.fork (a gunicorn master used it to load its set; it is opened again on its next
use) and keyed by process id: a worker makes its own on first use. (Workers that kept the master's pool
object died with SIGSEGV in libc when they exited.) Every connection is checked before it is handed out
(a database restarted under the server leaves dead sockets in the pool), and a database that cannot be
reached within `POOL_WAIT_S` is a StoreUnavailableError: the API answers 503. For `RETRY_S` after that,
requests fail at once with the same error instead of each waiting (measured: a request waited the whole
POOL_WAIT_S, once for the reload check and once for its search); then one waits again, so the server
recovers by itself within about RETRY_S of the database's return (the pool reconnects at once).
"""
from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from lib.errors import StoreError, StoreUnavailableError
from lib.store.postgres import CONNECT_TIMEOUT_S, database_error, prepare, shown

log = logging.getLogger(__name__)

POOL_WAIT_S = 2.0  # enough to open a connection to a remote server with TLS; threads never wait for one
RETRY_S = 2.0


def _close_before_fork(held: weakref.ref[StorePool]) -> None:
    pool = held()
    if pool is not None:
        pool.close()


class StorePool:
    """A pool of prepared connections to one database, for the process that uses it."""

    def __init__(self, url: str, size: int = 4) -> None:
        """`size`: the most connections at once, one per thread that serves requests."""
        self.url, self.size = url, size
        logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # it logs every failed reconnection attempt
        self._pool: ConnectionPool | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._inherited: list[ConnectionPool] = []  # a parent's pool, never closed here: that would end its sessions
        self._failure: tuple[float, StoreUnavailableError] | None = None  # when it last failed, and how
        os.register_at_fork(before=partial(_close_before_fork, weakref.ref(self)))

    def _current(self) -> ConnectionPool:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():
                if self._pool is not None:
                    self._inherited.append(self._pool)
                self._pool = ConnectionPool(self.url, min_size=1, max_size=self.size, open=True,
                                            kwargs={"connect_timeout": CONNECT_TIMEOUT_S, "autocommit": True,
                                                    "prepare_threshold": None},
                                            configure=prepare, check=ConnectionPool.check_connection,
                                            timeout=POOL_WAIT_S, reconnect_timeout=0, name="clipsearch-store")
                self._pid = os.getpid()
            return self._pool

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A checked connection for one request; StoreUnavailableError when the database is away."""
        failure = self._failure
        if failure is not None and time.monotonic() - failure[0] < RETRY_S:
            raise failure[1]
        try:
            with self._current().connection() as connection:
                yield connection
        except PoolTimeout:
            raise self._failed(StoreUnavailableError(f"the store database {shown(self.url)} is not reachable "
                                                     f"(no connection within {POOL_WAIT_S:g} s)")) from None
        except psycopg.OperationalError as err:
            raise self._failed(database_error(err, self.url)) from None
        self._failure = None

    def _failed(self, err: StoreError) -> StoreError:
        if isinstance(err, StoreUnavailableError):
            self._failure = (time.monotonic(), err)
        return err

    def close(self) -> None:
        """Close this process's pool (the next connection() opens another)."""
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.close(timeout=2)
            self._pool = None
