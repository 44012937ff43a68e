"""An IVF build (--from-embeddings, crossover lowered) killed with SIGKILL at several points, then run again."""
import os
import subprocess
import sys

import pytest

from lib.data.synthetic_vectors import write_mixture
from lib.serve.index_set import load_index_set
from lib.store.catalog import Catalog
from lib.store.dataset_index import open_dataset
from lib.store.index_files import read_index, vectors_of
from tests.conftest import MIXTURE, REPO, held_out, ivf_settings
from tests.helpers import share_model_cache
from tests.ingest.test_build_kill import kill_when

pytestmark = pytest.mark.slow
PARTITIONS = 40


def start(workspace, source, *extra):
    command = [sys.executable, "build_image_index.py", "mix", "--from-embeddings", str(source), "--model", "demo",
               "--workspace", str(workspace), "--ivf-min-vectors", "2000", "--embeddings-partition-size", "500",
               "--no-progress", *extra]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIPSEARCH_")}
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def assert_searchable_and_consistent(settings, demo_encoder) -> Catalog:
    """What a server would load: every file is the recorded one, the IVF lists hold exactly the catalog's ids."""
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    opened = open_dataset(catalog, settings.indexes_dir, "mix", 128)
    for partition in catalog.partitions("mix"):
        ids, _ = vectors_of(read_index(settings.indexes_dir / partition.index_file, partition.index_sha256))
        assert sorted(ids) == [r.id for r in catalog.images("mix", partition.name)]
        if opened.ivf is not None and partition.name in opened.ivf.shards:
            assert opened.ivf.shards[partition.name].ntotal == partition.count
    dataset = load_index_set(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity).datasets["mix"]
    found = dataset.search(held_out(20), 10)[1]
    known = {r.id for r in catalog.images("mix")}
    assert set(found[found >= 0].tolist()) <= known and (found >= 0).all()
    return catalog


def test_kill_9_during_an_ivf_build_leaves_a_consistent_index_set(tmp_path, demo_encoder, model_cache):
    source = tmp_path / "embeddings"
    write_mixture(source, PARTITIONS * 500, MIXTURE, classes=4, part_rows=7_000)
    settings = ivf_settings(share_model_cache(tmp_path / "ws", model_cache))  # the runs read the session's model
    indexes = settings.indexes_dir
    partway = lambda: len(list(indexes.glob("image_mix_*.ivf"))) >= 3  # noqa: E731  quantizer and some lists
    assert kill_when(start(settings.workspace, source), partway), "finished before the kill; use more data"
    assert_searchable_and_consistent(settings, demo_encoder)
    all_written = lambda: len(list(indexes.glob("image_mix_*.ivf"))) >= PARTITIONS  # noqa: E731  tuning
    kill_when(start(settings.workspace, source), all_written)
    assert_searchable_and_consistent(settings, demo_encoder)
    finished = start(settings.workspace, source)
    output = finished.communicate()[0]
    assert finished.returncode == 0, output
    catalog = assert_searchable_and_consistent(settings, demo_encoder)
    record = catalog.ivf("mix")
    assert len(catalog.images("mix")) == PARTITIONS * 500 and record.nprobe > 0 and record.tuned_on == 20_000
    assert all(p.ivf_file for p in catalog.partitions("mix")) and not list(indexes.glob("*.tmp"))
    # A retrain killed while it stages the new lists keeps the old quantizer and lists whole.
    staged = lambda: len(list(indexes.glob("*.ivf.tmp"))) >= 5  # noqa: E731
    assert kill_when(start(settings.workspace, source, "--retrain"), staged)
    assert Catalog.in_folder(indexes).ivf("mix").quantizer_sha256 == record.quantizer_sha256
    assert_searchable_and_consistent(settings, demo_encoder)
    retrained = start(settings.workspace, source, "--retrain")
    output = retrained.communicate()[0]
    assert retrained.returncode == 0 and "trained 256 lists" in output and not list(indexes.glob("*.tmp"))
    assert_searchable_and_consistent(settings, demo_encoder)
