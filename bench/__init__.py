"""Benchmarks: run each as `python -m bench.NAME` from the repo root; each prints a table.

Every benchmark has `--smoke`: tiny sizes and a few seconds through the same code path, run by `make test`
(tests/test_bench_smoke.py), so that a benchmark that no longer runs fails the tests.
"""
from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lib.settings import load_settings

SMOKE_HELP = "tiny sizes and a few seconds through the same code path: does it still run (make test runs it)"


class SmokeParser(argparse.ArgumentParser):
    """A benchmark's flags, with --smoke putting tiny values in place of the defaults (flags given still win)."""

    def __init__(self, description: str | None, smoke: dict[str, Any]) -> None:
        super().__init__(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
        self.smoke = smoke
        self.add_argument("--verbose", action="store_true", help="log debug messages")
        self.add_argument("--smoke", action="store_true", help=SMOKE_HELP)

    def parse_known_args(self, args: Sequence[str] | None = None,
                         namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        """Parsed twice with --smoke: first to see it, then with the smoke values as the defaults."""
        found, rest = super().parse_known_args(args, copy.copy(namespace))
        if not found.smoke:
            return found, rest
        unknown = set(self.smoke) - {action.dest for action in self._actions}
        assert not unknown, f"smoke values for flags the benchmark does not have: {sorted(unknown)}"
        self.set_defaults(**self.smoke)
        return super().parse_known_args(args, namespace)


def link_model_cache(workspace: Path) -> Path:
    """`workspace` (a benchmark's scratch one) with its converted models, cache/openvino, linked to those of the
    settings' workspace, so that a model converts once per machine rather than once per run; returns it."""
    shared = load_settings().cache_dir / "openvino"
    shared.mkdir(parents=True, exist_ok=True)
    (workspace / "cache").mkdir(parents=True, exist_ok=True)
    link = workspace / "cache" / "openvino"
    if not link.exists():
        link.symlink_to(shared, target_is_directory=True)
    return workspace
