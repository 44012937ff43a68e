"""The real scripts/api.sh under gunicorn, over loopback."""
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


@pytest.fixture(scope="module")
def server(built_workspace):
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(built_workspace.workspace)}
    process = subprocess.Popen([str(REPO / "scripts" / "api.sh"), "--port", str(port), "--workers", "2",
                                "--threads", "2"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("api.sh did not answer /health in 90 s:\n" + process.stdout.read().decode()[-3000:])
    yield base, process
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def test_the_real_server_answers(server):
    base, _ = server
    assert requests.get(f"{base}/health").json()["datasets"] == 1
    results = requests.post(f"{base}/search", json={"query": "red circle", "k": 3}).json()["results"]
    assert len(results) == 3
    assert requests.get(base + results[0]["thumbnail_url"]).headers["Content-Type"] == "image/jpeg"
    bad = requests.post(f"{base}/search", data="{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed JSON"
    assert requests.get(f"{base}/").status_code == 200


def test_a_crashed_worker_is_replaced(server):
    base, process = server
    workers = children(process.pid)
    assert len(workers) == 2
    os.kill(next(iter(workers)), signal.SIGKILL)
    deadline = time.time() + 30
    while time.time() < deadline and (len(children(process.pid)) != 2 or children(process.pid) == workers):
        time.sleep(0.5)
    assert len(children(process.pid)) == 2 and children(process.pid) != workers
    for _ in range(6):
        assert requests.post(f"{base}/search", json={"query": "blue", "k": 2}).status_code == 200
