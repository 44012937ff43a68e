"""The real scripts/api.sh under gunicorn, over loopback."""
import os
import signal
import subprocess
import time

import pytest
import requests

pytestmark = pytest.mark.slow


def children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return {int(p) for p in out.split()}


def test_the_real_server_answers(live_server):
    base, _ = live_server
    assert requests.get(f"{base}/health").json()["datasets"] == 1
    results = requests.post(f"{base}/search", json={"query": "red circle", "k": 3}).json()["results"]
    assert len(results) == 3
    assert requests.get(base + results[0]["thumbnail_url"]).headers["Content-Type"] == "image/jpeg"
    bad = requests.post(f"{base}/search", data="{", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"] == "malformed JSON"
    assert requests.get(f"{base}/").status_code == 200


def test_a_crashed_worker_is_replaced(live_server):
    base, process = live_server
    deadline = time.time() + 30
    while time.time() < deadline and len(children(process.pid)) != 2:  # /health answers once one worker is up
        time.sleep(0.2)
    workers = children(process.pid)
    assert len(workers) == 2
    killed = next(iter(workers))
    os.kill(killed, signal.SIGKILL)
    deadline, stable_since = time.time() + 30, None
    while time.time() < deadline:  # until two workers, neither the killed one, have been up for a second
        now = children(process.pid)
        ok = len(now) == 2 and killed not in now
        stable_since = (stable_since or time.time()) if ok else None
        if stable_since and time.time() - stable_since > 1:
            break
        time.sleep(0.2)
    assert len(children(process.pid)) == 2 and killed not in children(process.pid)
    for _ in range(6):
        assert requests.post(f"{base}/search", json={"query": "blue", "k": 2}).status_code == 200
