"""build_image_index.py killed with SIGKILL mid-build (a real process, not a simulated exception)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from lib.data.synthetic import generate_dataset
from tests.conftest import REPO
from tests.helpers import share_model_cache
from tests.ingest.test_image_index import assert_consistent, settings_for

pytestmark = pytest.mark.slow


def build_command(workspace, root) -> dict:
    command = [sys.executable, "build_image_index.py", "killed", str(root), "--workspace", str(workspace),
               "--batch-size", "4", "--num-workers", "1", "--no-progress"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    return dict(args=command, cwd=REPO, env=env)


def start_build(workspace, root):
    return subprocess.Popen(**build_command(workspace, root), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def kill_when(process, ready, deadline: float = 120) -> bool:
    """SIGKILL the build as soon as `ready()` holds; False if it finished first."""
    stop = time.monotonic() + deadline
    while time.monotonic() < stop and process.poll() is None:
        if ready():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    process.wait()
    return False


def kill_after(process, folder, partitions_written: int, deadline: float = 120) -> bool:
    """SIGKILL the build once `partitions_written` index files exist; False if it finished first."""
    return kill_when(process, lambda: len(list(folder.glob("image_killed_*.index"))) >= partitions_written, deadline)


def test_kill_9_mid_build_then_rerun_finishes(tmp_path, model_cache):
    root = tmp_path / "data"
    images = generate_dataset(root, seed=5, per_class=6)
    workspace = share_model_cache(tmp_path / "ws", model_cache)
    killed = [kill_after(start_build(workspace, root), workspace / "indexes", n) for n in (1, 12)]
    assert killed[0], "the build finished before it could be killed; use a bigger dataset"
    settings = settings_for(workspace, root, dataset_name="killed")
    assert_consistent(settings, "killed")  # whatever was published is whole and agrees with the catalog
    finished = subprocess.run(**build_command(workspace, root), capture_output=True, text=True)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    catalog = assert_consistent(settings, "killed")
    assert len(catalog.images("killed")) == len(images)
    assert len(catalog.partitions("killed")) == 36
    assert "0 removed" in finished.stdout and " 0 skipped" in finished.stdout
    # The model's load and warm-up are reported apart from the encoding's time and rate.
    summary = next(line for line in finished.stdout.splitlines() if " images encoded into " in line)
    found = re.search(r"the model loaded in (\d+\.\d) s and warmed up in (\d+\.\d) s, not counted in that$", summary)
    assert found and float(found[1]) > 0 and float(found[2]) > 0, summary
    # The duplicate thresholds are calibrated after the summary, the index already searchable.
    lines = finished.stdout.splitlines()
    assert lines.index(summary) < next(n for n, line in enumerate(lines) if line.startswith("duplicate thresholds"))
