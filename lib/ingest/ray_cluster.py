"""A build's hold on a Ray cluster: join it (or start a local instance), size the actor pool, watch that it
stays up, and let go.

Ray alone handles a lost cluster badly for a command line: connecting to a wrong address retries for
minutes, and a driver whose cluster died waits on retried tasks until its core worker ends the process
60 s later with a page of C++ log. So the address is checked with one TCP connection first, and the
results are pulled by a thread while this one watches the cluster's GCS port: gone for `lost_after_s`,
the build stops with a ClusterError between two batches, never inside a partition commit.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lib.errors import ClipSearchError, ClusterError, ClusterLostError
from lib.ingest.signal_stack import current_stack, restore_stack
from lib.settings import REPO_ROOT

log = logging.getLogger(__name__)

# The code and models/demo-clip are shipped to every worker (Ray leaves .gitignore'd folders out too).
RUNTIME_EXCLUDES = ["/data/", "/indexes/", "/indexes_text/", "/cache/", "/logs/", ".git", ".venv", "*.index"]
RAY_LOGGERS = ("ray", "ray.data")
CONNECT_TIMEOUT_S = 5.0
WATCH_EVERY_S = 1.0


@dataclass(frozen=True)
class ActorPlan:
    """How the work is spread: encoder actors (one model each) and decode tasks, in Ray's logical resources."""

    actors: int
    actor_cpus: float
    actor_gpus: int
    threads: int  # inference threads in each encoder actor
    decode_cpus: float  # logical CPUs one decode task holds

    @classmethod
    def for_cluster(cls, resources: Mapping[str, float], nodes: int) -> ActorPlan:
        """`nodes`: the live nodes with CPUs (a head node started with 0 CPUs does not count).

        One actor per GPU where there are GPUs. Otherwise one actor per node, with a torch thread per core
        but only half the node's CPUs in Ray's books, so that decode tasks can always be scheduled beside it.
        A decode task asks for less than an actor so that Ray Data never fuses the two stages into the actors:
        decoding overlaps encoding, as the local engine's DataLoader workers do."""
        cpus, gpus = float(resources.get("CPU", 1)), int(resources.get("GPU", 0))
        if gpus:
            return cls(actors=gpus, actor_cpus=1, actor_gpus=1, threads=1, decode_cpus=0.5)
        per_node = cpus / max(1, nodes)
        return cls(actors=max(1, nodes), actor_cpus=per_node / 2, actor_gpus=0, threads=max(1, round(per_node)),
                   decode_cpus=min(1.0, per_node / 4))

    def describe(self) -> str:
        device = "1 GPU" if self.actor_gpus else f"{self.threads} inference threads"
        return f"{self.actors} encoder actor(s) with {device} each"


def _host_port(address: str) -> tuple[str, int] | None:
    host, _, port = address.rpartition(":")
    return (host, int(port)) if host and port.isdigit() and "://" not in address else None


def reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """True when something accepts a TCP connection at host:port (addresses of other forms are not checked)."""
    target = _host_port(address)
    if target is None:
        return True
    try:
        socket.create_connection(target, timeout=timeout).close()
    except OSError:
        return False
    return True


class RayConnection:
    """Joins the cluster at `address`, or starts a local Ray instance when it is empty; shut down on leaving."""

    def __init__(self, address: str = "", lost_after_s: float = 15.0) -> None:
        self.address, self.lost_after_s = address, lost_after_s
        self.where = address or "a local Ray instance"
        self.gcs_address = ""
        self.signal_stack = current_stack()  # what Ray's driver replaces (lib/ingest/signal_stack.py)

    def __enter__(self) -> Any:
        # Ray starts a local instance on first use when none is connected. After a lost cluster, our
        # results thread is still inside Ray Data's iterator when the build shuts Ray down; its next call
        # then started a new local Ray in a dying process (a segfault at exit, seen in CI). Never here:
        # this is what RAY_ENABLE_AUTO_CONNECT=0 sets, but Ray reads that variable once, at import.
        try:
            import ray
            import ray._private.auto_init_hook as auto_init
            import ray.data
        except ImportError:
            raise ClusterError("--engine ray needs Ray: "
                               "pip install -c constraints.txt -r requirements-cluster.txt") from None
        if self.address and not reachable(self.address):
            raise ClusterError(f"no Ray cluster answers at {self.address}; start one with `ray start --head` "
                               "there, or fix --ray-address")
        auto_init.enable_auto_connect = False
        for name in RAY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the builder's own tqdm bar is the one progress bar
        context.print_on_execution_start = False
        context.raise_original_map_exception = True  # so that a worker's ModelLoadError reaches the user as it is
        self.signal_stack = current_stack()
        try:
            ray.init(address=self.address or "local", include_dashboard=False, logging_level=logging.ERROR,
                     log_to_driver=False, runtime_env={"working_dir": str(REPO_ROOT), "excludes": RUNTIME_EXCLUDES})
        except (ConnectionError, RuntimeError, ValueError) as err:  # a refused token, another Ray version, ...
            raise ClusterError(f"cannot join the Ray cluster at {self.where}: {first_line(err)}") from None
        self.gcs_address = ray.get_runtime_context().gcs_address
        return ray

    def __exit__(self, exc_type: type | None, exc: BaseException | None, traceback: object) -> None:
        if isinstance(exc, ClusterLostError):
            return  # no teardown against a cluster that is gone (see ClusterLostError)
        import ray

        ray.shutdown()
        restore_stack(self.signal_stack)

    def stream(self, batches: Iterable[Any]) -> Iterator[Any]:
        """The items of a Ray iterator, pulled by a thread while this one checks that the cluster is still there."""
        results: queue.Queue = queue.Queue(maxsize=4)
        stop = threading.Event()
        threading.Thread(target=_pump, args=(batches, results, stop), name="ray-results", daemon=True).start()
        down_since = None
        try:
            while True:
                try:
                    kind, item = results.get(timeout=WATCH_EVERY_S)
                except queue.Empty:
                    down_since = None if reachable(self.gcs_address, WATCH_EVERY_S) else down_since or time.monotonic()
                    if down_since is not None and time.monotonic() - down_since >= self.lost_after_s:
                        raise self._stopped(f"went away (its head node stopped answering {self.lost_after_s:.0f} s "
                                            "ago)") from None
                    continue
                if kind == "done":
                    return
                if kind == "error":
                    raise our_error(item) or self._stopped(f"failed ({first_line(item)})") from item
                yield item
        finally:
            stop.set()

    def _stopped(self, what: str) -> ClusterLostError:
        return ClusterLostError(f"the Ray cluster at {self.where} {what} mid-build; the partitions finished so far "
                            "are kept: run the build again to do the rest")


def _pump(batches: Iterable[Any], results: queue.Queue, stop: threading.Event) -> None:
    """Put each item (then 'done', or the error that ended the iteration) on `results` until told to stop."""
    try:
        for item in batches:
            if not _put(results, ("item", item), stop):
                return
        _put(results, ("done", None), stop)
    except Exception as err:  # Ray's errors reach the watching thread, which turns them into a ClusterError
        _put(results, ("error", err), stop)


def _put(results: queue.Queue, entry: tuple[str, Any], stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            results.put(entry, timeout=WATCH_EVERY_S)
            return True
        except queue.Full:
            continue
    return False


def our_error(err: BaseException | None) -> ClipSearchError | None:
    """The error of ours that a Ray error carries (a worker's ModelLoadError, say), as one line, if any."""
    found, seen = None, set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        found = err if isinstance(err, ClipSearchError) else found
        err = getattr(err, "cause", None) or err.__cause__
    if found is None:
        return None
    kind = next(k for k in type(found).__mro__ if k.__module__ == ClipSearchError.__module__)
    return kind(first_line(found))


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
