"""Run one job in a freshly spawned Python process and hand back what it returns.

Why: a process that has compiled an OpenVINO model hangs its forked children when they compile (reproduced:
`os.fork` after `compile_model`, and the child's own compile never returned). gunicorn's preloading master
loads the encoder and then forks its workers, and the build forks decode workers, so nothing that loads a
model may compile one on the way: the probes and measurements that need a compiled model (the text tower's
bf16 probe, int8 quantization, `--precision auto`) run here instead, in a spawned child, which shares no
OpenVINO state with its parent. A spawn costs the child's imports (~5 s), once per model and cache.
"""
from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def run_spawned(job: Callable[..., Any], *args: Any) -> Any:
    """`job(*args)` in a spawned process, its logging at this process's level; re-raises what it raised.

    `job` must be a module-level function and `args` picklable: the child imports the job's module afresh.
    """
    level = logging.getLogger().getEffectiveLevel()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_with_logging, level, job, args).result()


def _with_logging(level: int, job: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    from lib.cli import setup_logging

    if level <= logging.INFO:  # the caller shows its progress: so does its child
        setup_logging(verbose=level <= logging.DEBUG)
    return job(*args)
