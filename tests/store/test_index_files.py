import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from lib.errors import ClipSearchError, IndexFileError
from lib.store.files import build_lock, publish, settle
from lib.store.index_files import build_index, effective_index_type, index_type_of, read_index, stage_index, vectors_of
from tests.conftest import REPO


def unit_vectors(count: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("kind, count", [("flat", 50), ("hnsw", 500), ("ivfpq", 12_000)])
def test_each_type_searches_and_gives_back_exact_vectors(kind, count):
    vectors = unit_vectors(count, 32)
    ids = np.arange(1000, 1000 + count)
    index = build_index(vectors, ids, kind)
    assert index_type_of(index) == kind and index.ntotal == count
    found_ids, found = vectors_of(index)
    order = np.argsort(found_ids)
    np.testing.assert_array_equal(found_ids[order], ids)
    np.testing.assert_allclose(found[order], vectors, atol=1e-6)
    scores, hits = index.search(vectors[:20], 1)
    assert (hits[:, 0] == ids[:20]).mean() >= 0.95
    np.testing.assert_allclose(scores[:, 0][hits[:, 0] == ids[:20]], 1.0, atol=1e-4)


def test_small_ivfpq_partitions_fall_back_to_exact():
    assert effective_index_type("ivfpq", 500) == "flat"
    assert effective_index_type("ivfpq", 50_000) == "ivfpq"
    with pytest.raises(ValueError, match="unknown index type"):
        effective_index_type("annoy", 10)


def test_staged_write_publish_and_verify(tmp_path):
    path = tmp_path / "x.index"
    index = build_index(unit_vectors(10, 8), np.arange(10))
    staged, sha = stage_index(index, path)
    assert staged.exists() and not path.exists()
    publish(staged)
    assert read_index(path, sha).ntotal == 10
    with pytest.raises(IndexFileError, match="does not match the catalog"):
        read_index(path, "0" * 64)
    # A publish interrupted after the catalog recorded the new file: settle finishes it.
    staged, new_sha = stage_index(build_index(unit_vectors(3, 8), np.arange(3)), path)
    settle(path, new_sha)
    assert read_index(path, new_sha).ntotal == 3 and not staged.exists()
    # A staged file that the catalog never recorded is only deleted by a builder (discard=True).
    staged, _ = stage_index(build_index(unit_vectors(4, 8), np.arange(4)), path)
    settle(path, new_sha)
    assert staged.exists()
    settle(path, new_sha, discard=True)
    assert not staged.exists() and read_index(path, new_sha).ntotal == 3


def test_damaged_or_missing_file(tmp_path):
    (tmp_path / "bad.index").write_bytes(b"nonsense")
    with pytest.raises(IndexFileError, match="damaged"):
        read_index(tmp_path / "bad.index")
    with pytest.raises(IndexFileError, match="missing"):
        read_index(tmp_path / "none.index")


HOLD_LOCK = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from lib.store.files import build_lock
    with build_lock(Path(sys.argv[1]), "photos"):
        child = os.fork()  # as a DataLoader worker is forked
        if child == 0:
            time.sleep(60)
            os._exit(0)
        print(child, flush=True)
        if sys.argv[2] == "die":
            os.kill(os.getpid(), 9)
        time.sleep(60)
""")


def hold_lock(folder, then: str) -> tuple[subprocess.Popen, int]:
    process = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(folder), then], stdout=subprocess.PIPE,
                               text=True, cwd=REPO)
    return process, int(process.stdout.readline())


def test_one_build_at_a_time_and_a_killed_build_frees_the_lock(tmp_path):
    process, child = hold_lock(tmp_path, "hold")
    try:
        with pytest.raises(ClipSearchError, match="another build of 'photos' is running"):
            with build_lock(tmp_path, "photos"):
                pass
        with build_lock(tmp_path, "other"):  # another dataset is not blocked
            pass
    finally:
        process.kill(), process.wait(), os.kill(child, signal.SIGKILL)
    process, child = hold_lock(tmp_path, "die")
    try:
        assert process.wait(timeout=30) == -signal.SIGKILL
        os.kill(child, 0)  # the forked worker still lives, and must not keep the lock
        with build_lock(tmp_path, "photos"):
            pass
    finally:
        os.kill(child, signal.SIGKILL)
