"""Joining a Ray cluster, sizing the actor pool, and a cluster that goes away mid-build."""
import os
import subprocess
import sys
import threading
import time

import pytest

from lib.errors import ClusterError
from lib.ingest.ray_cluster import ActorPlan, RayConnection, our_error, reachable
from tests.conftest import REPO, free_port
from tests.ingest.test_image_index import assert_consistent, settings_for


@pytest.mark.parametrize("resources, nodes", [({"CPU": 2}, 1), ({"CPU": 2}, 2), ({"CPU": 64}, 4), ({"CPU": 3}, 2)])
def test_cpu_actors_leave_room_for_decoding_on_every_node(resources, nodes):
    plan = ActorPlan.for_cluster(resources, nodes)
    per_node = resources["CPU"] / nodes
    assert plan.actors == nodes and plan.actor_gpus == 0 and plan.threads == max(1, round(per_node))
    assert plan.actor_cpus + plan.decode_cpus <= per_node  # else decode tasks could wait for ever
    assert plan.decode_cpus != plan.actor_cpus  # else Ray Data fuses decoding into the actors


def test_one_actor_per_gpu():
    plan = ActorPlan.for_cluster({"CPU": 96, "GPU": 8}, 2)
    assert (plan.actors, plan.actor_gpus, plan.actor_cpus) == (8, 1, 1)
    assert "8 encoder actor(s) with 1 GPU each" == plan.describe()


def test_an_address_where_nothing_listens_fails_at_once():
    address = f"127.0.0.1:{free_port()}"
    assert not reachable(address) and reachable("auto") and reachable("ray://head:10001")
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"no Ray cluster answers at {address}"):
        RayConnection(address).__enter__()
    assert time.monotonic() - started < 10


def test_our_error_carried_by_a_ray_task_error_comes_back_as_one_line():
    from ray.exceptions import RayTaskError

    from lib.errors import ModelLoadError

    cause = ModelLoadError("model 'demo' on a Ray worker has other weights\nFailed to apply UDF transform")
    wrapped = RayTaskError("submit", "Traceback ...", cause).as_instanceof_cause()
    found = our_error(wrapped)
    assert type(found) is ModelLoadError and str(found) == "model 'demo' on a Ray worker has other weights"
    assert our_error(RayTaskError("submit", "Traceback ...", ValueError("a bug"))) is None


def test_without_ray_installed_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(ClusterError, match="needs Ray: pip install -c constraints.txt -r requirements-cluster.txt"):
        RayConnection("").__enter__()


def watched(items, lost_after_s=0.5):
    connection = RayConnection("", lost_after_s=lost_after_s)
    connection.gcs_address = f"127.0.0.1:{free_port()}"  # nothing listens: the cluster is gone
    return connection.stream(items)


def test_stream_passes_results_through_while_they_come():
    assert list(watched(iter(range(5)))) == [0, 1, 2, 3, 4]


def test_stream_stops_with_a_cluster_error_when_the_cluster_stops_answering():
    blocked = threading.Event()

    def never_ending():
        yield "first"
        blocked.wait()  # as a Ray iterator waiting on a dead cluster
        yield "never"

    results = watched(never_ending())
    assert next(results) == "first"
    with pytest.raises(ClusterError, match=r"went away \(its head node stopped answering 0 s ago\) mid-build; the "
                                           "partitions finished"):
        next(results)
    blocked.set()


def test_stream_turns_an_error_of_the_iterator_into_a_cluster_error():
    def failing():
        yield 1
        raise RuntimeError("node 10.0.0.2 died\nlong traceback")

    results = watched(failing(), lost_after_s=60)
    assert next(results) == 1
    with pytest.raises(ClusterError, match=r"failed \(node 10.0.0.2 died\) mid-build"):
        next(results)


@pytest.mark.slow
def test_a_cluster_gone_mid_build_stops_it_with_one_line_and_keeps_what_was_committed(tmp_path, tiny_dataset):
    """ViT-B/32 in PyTorch: slow enough that the cluster goes while batches are left (the backends have their
    own tests; tests/ingest/test_ray_engine.py builds on Ray with the default one)."""
    from ray.cluster_utils import Cluster

    root, images = tiny_dataset
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    workspace = tmp_path / "ws"
    command = [sys.executable, "build_image_index.py", "tiny", str(root), "--workspace", str(workspace), "--engine",
               "ray", "--ray-address", cluster.address, "--model", "random:ViT-B/32", "--backend", "torch",
               "--batch-size", "2", "--no-progress"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}, "HF_HUB_OFFLINE": "1"}
    stderr = tmp_path / "stderr.txt"
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=open(stderr, "w"))
    try:
        deadline = time.monotonic() + 420  # the first partition: ~30 s alone, minutes on a loaded machine
        while not list((workspace / "indexes").glob("image_tiny_*.index")) and time.monotonic() < deadline:
            assert process.poll() is None, stderr.read_text()[-2000:]
            time.sleep(0.05)
        for node in [*cluster.worker_nodes, cluster.head_node]:
            node.kill_all_processes(check_alive=False, allow_graceful=False)
        assert process.wait(timeout=120) == 2
    finally:
        process.kill()
    last = stderr.read_text().strip().splitlines()[-1]
    assert last.startswith(f"build_image_index: error: the Ray cluster at {cluster.address} went away (its head node "
                           "stopped answering 15 s ago) mid-build")
    assert "run the build again" in last
    settings = settings_for(workspace, root, dataset_name="tiny")
    kept = len(assert_consistent(settings, "tiny").images("tiny"))
    assert 0 < kept < len(images)
