"""Every benchmark in bench/ still runs: `python -m bench.NAME --smoke` exits 0 and prints its table.

The modules are found by glob, so a new benchmark is covered as soon as it exists (and fails here until it
has --smoke). Those that start a server, a Ray instance or child processes take 30-90 s on 2 busy cores.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import share_model_cache

REPO = Path(__file__).resolve().parent.parent
SLOW = {"api_abuse", "api_load", "caption_scale", "large_collection", "postgres_store", "ray_engine"}
TABLE_RULE = re.compile(r"^\|(-{3,}\|)+$", re.MULTILINE)  # the |---|---| line under a markdown table's header


def benchmarks() -> list:
    names = sorted(path.stem for path in (REPO / "bench").glob("[!_]*.py"))
    return [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else []) for name in names]


@pytest.fixture(scope="module")
def smoke_workspace(tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Path:
    """The settings' workspace of the smoke runs: their scratch workspaces link its model cache, the session's."""
    return share_model_cache(tmp_path_factory.mktemp("bench-smoke"), model_cache)


@pytest.mark.parametrize("name", benchmarks())
def test_benchmark_runs_in_smoke_mode(name: str, smoke_workspace: Path) -> None:
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(smoke_workspace), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-m", f"bench.{name}", "--smoke"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=540)
    assert result.returncode == 0, f"bench.{name} --smoke exited {result.returncode}:\n{result.stderr[-4000:]}"
    assert TABLE_RULE.search(result.stdout), f"bench.{name} --smoke printed no table:\n{result.stdout[-3000:]}"


def test_smoke_values_replace_defaults_but_not_flags_given() -> None:
    from bench.duplicates_scale import make_parser

    assert make_parser().parse_args([]).vectors == [10_000, 100_000]
    assert make_parser().parse_args(["--smoke"]).vectors == [1000, 2000]
    assert make_parser().parse_args(["--vectors", "5", "--smoke"]).vectors == [5]
    assert make_parser().parse_args(["--smoke", "--dim", "8"]).dim == 8
