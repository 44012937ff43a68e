"""scripts/init.sh and scripts/clean.sh on a workspace of their own."""
import os
import subprocess
from pathlib import Path

from tests.conftest import REPO


def run(script: str, workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(workspace)}
    return subprocess.run([str(REPO / "scripts" / script), *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def test_init_is_idempotent(tmp_path):
    (tmp_path / "indexes").mkdir()
    (tmp_path / "indexes" / "keep.index").write_text("x")
    for _ in range(2):
        assert run("init.sh", tmp_path).returncode == 0
    assert all((tmp_path / d).is_dir() for d in ("data", "indexes", "indexes_text", "cache", "logs"))
    assert (tmp_path / "indexes" / "keep.index").read_text() == "x"


def test_clean_removes_generated_and_asks_for_the_rest(tmp_path):
    run("init.sh", tmp_path)
    (tmp_path / "indexes" / "image_demo_a_128.index").write_text("x")
    (tmp_path / "indexes" / ".gitkeep").write_text("")
    (tmp_path / "data" / "demo").mkdir()
    (tmp_path / "data" / "demo" / ".generated").write_text("")
    (tmp_path / "data" / "my-photos").mkdir()
    (tmp_path / "data" / "my-photos" / "cat.jpg").write_text("precious")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "important.txt").write_text("keep")
    (tmp_path / "data" / "link-out").symlink_to(outside)
    result = run("clean.sh", tmp_path, "--indexes", "--data")
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "indexes" / "image_demo_a_128.index").exists()
    assert (tmp_path / "indexes" / ".gitkeep").exists()
    assert not (tmp_path / "data" / "demo").exists()
    assert (tmp_path / "data" / "my-photos" / "cat.jpg").read_text() == "precious"  # not generated: kept
    assert "kept" in result.stderr and "my-photos" in result.stderr
    assert (outside / "important.txt").read_text() == "keep"  # a link out of the workspace is never followed
    dry = run("clean.sh", tmp_path, "--data", "--yes", "--dry-run")
    assert "would delete" in dry.stdout and (tmp_path / "data" / "my-photos").exists()
    assert run("clean.sh", tmp_path, "--data", "--yes").returncode == 0
    assert not (tmp_path / "data" / "my-photos").exists()


def test_clean_refuses_unknown_options(tmp_path):
    result = run("clean.sh", tmp_path, "--everything")
    assert result.returncode == 2 and "unknown option" in result.stderr
    assert run("clean.sh", tmp_path).returncode == 2
