"""The IVF files of the store: one shared quantizer, per-partition lists, their commit, and the catalog migration."""
import os
import sqlite3

import faiss
import numpy as np
import pytest

import lib.store.index_files as index_files
from lib.errors import IndexFileError
from lib.ingest.ivf_layout import IvfLayout
from lib.ingest.ivf_train import train_ivf
from lib.store.catalog import Catalog, IvfRecord
from lib.store.dataset_index import open_dataset
from lib.store.exact_set import ExactSet
from lib.store.files import sha256_known
from lib.store.index_files import build_index, commit_ivf, commit_partition, settle_partition
from lib.store.ivf_files import TrainedIVF
from tests.conftest import MIXTURE


@pytest.fixture(scope="module")
def vectors():
    return MIXTURE.sample(3_000, np.random.default_rng(0))[0]


@pytest.fixture(scope="module", params=["flat", "sq8", "pq16"])
def trained(request, vectors):
    return train_ivf(vectors, IvfLayout(32, request.param, len(vectors), True))[0]


def test_partitions_share_the_quantizer_and_stack_into_one_index(tmp_path, trained, vectors):
    paths = []
    for part in range(3):
        ids = np.arange(part * 1000, (part + 1) * 1000) + 1
        paths.append(tmp_path / f"p{part}.ivf")
        paths[-1].write_bytes(trained.partition_bytes(trained.encode(vectors[ids - 1], ids)).tobytes())
    assert faiss.read_index(str(paths[0])).quantizer.ntotal == 0  # the file holds no copy of the centroids
    again = TrainedIVF.read(_written(tmp_path / "q", trained))
    shards = [again.open(path) for path in paths]
    assert isinstance(faiss.downcast_InvertedLists(shards[0].invlists), faiss.OnDiskInvertedLists)
    stacked = again.stacked(shards)
    scores, ids = stacked.search(vectors[:50], 1, params=faiss.SearchParametersIVF(nprobe=32))
    if trained.storage != "pq16":  # PQ codes alone do not find the exact vector first; re-ranking does
        np.testing.assert_array_equal(ids[:, 0], np.arange(1, 51))
    assert stacked.ntotal == 3000


def _written(path, trained):
    path.write_bytes(trained.to_bytes().tobytes())
    return path


def test_a_file_of_another_quantizer_is_refused(tmp_path, vectors):
    small = train_ivf(vectors, IvfLayout(16, "flat", len(vectors), True))[0]
    other = train_ivf(vectors, IvfLayout(32, "flat", len(vectors), True))[0]
    path = tmp_path / "p.ivf"
    path.write_bytes(small.partition_bytes(small.encode(vectors[:10], np.arange(10))).tobytes())
    with pytest.raises(IndexFileError, match="not encoded with the dataset's quantizer"):
        other.open(path)


@pytest.mark.parametrize("crash", ["before_commit", "after_commit"])
def test_commit_writes_both_files_and_a_crash_leaves_them_consistent(tmp_path, vectors, monkeypatch, crash):
    trained = train_ivf(vectors, IvfLayout(32, "sq8", len(vectors), True))[0]
    catalog = Catalog.in_folder(tmp_path)
    record = IvfRecord("d", "image_d_128.quantizer", "", "sq8", 32, 3000, 0.8, nprobe=4, nprobe_filtered=4)
    _dataset(catalog)
    commit_ivf(catalog, tmp_path, trained, record, [])
    commit_partition(catalog, tmp_path, "d", "a", np.arange(1, 1001), vectors[:1000], ivf=trained)
    partition = catalog.partitions("d")[0]
    assert partition.ivf_file == "image_d_a_128.ivf" and partition.ivf_sha256
    if crash == "before_commit":
        monkeypatch.setattr(catalog, "apply_partition", _raise)
    else:
        monkeypatch.setattr(index_files, "publish", _raise)
    with pytest.raises(KeyboardInterrupt):
        commit_partition(catalog, tmp_path, "d", "a", np.arange(1, 501), vectors[:500], ivf=trained)
    monkeypatch.undo()
    partition = catalog.partitions("d")[0]
    settle_partition(tmp_path, partition, discard=True)  # what the next builder does first
    assert not list(tmp_path.glob("*.tmp"))
    opened = open_dataset(catalog, tmp_path, "d", 128)
    assert opened.exact.count() == opened.ivf.all.ntotal == (1000 if crash == "before_commit" else 500)


def _dataset(catalog):
    from lib.store.catalog import DatasetRecord
    from lib.store.identity import ModelIdentity

    with catalog.transaction() as db:
        catalog.put_dataset(db, DatasetRecord("d", None, "embeddings", "auto", ModelIdentity("m", "0" * 64, 128)))


def _raise(*args, **kwargs):
    raise KeyboardInterrupt


def test_exact_set_finds_vectors_by_id_in_any_partition(vectors):
    stores = {name: build_index(vectors[i::3], np.arange(len(vectors))[i::3] * 10 + 7, kind)
              for i, (name, kind) in enumerate([("a", "flat"), ("b", "fp16"), ("c", "hnsw")])}
    exact = ExactSet(stores, 128)
    ids = np.array([7, 17, 27, 2997 * 10 + 7])
    np.testing.assert_allclose(exact.vectors(ids), vectors[[0, 1, 2, 2997]], atol=2e-3)
    assert exact.locate(np.array([8]))[0][0] == -1 and exact.count(["a"]) == 1000
    assert sum(len(ids) for ids, _ in exact.blocks(rows=700)) == 3000


def test_an_old_catalog_gets_the_new_columns_in_place(tmp_path):
    db = sqlite3.connect(tmp_path / "catalog.sqlite")
    db.executescript("CREATE TABLE datasets (name TEXT PRIMARY KEY, root TEXT NOT NULL, layout TEXT NOT NULL, "
                     "index_type TEXT NOT NULL, model TEXT NOT NULL);"
                     "CREATE TABLE partitions (dataset TEXT NOT NULL, name TEXT NOT NULL, index_file TEXT NOT NULL, "
                     "index_sha256 TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (dataset, name));"
                     "INSERT INTO partitions VALUES ('d', 'a', 'image_d_a_8.index', 'abc', 3);")
    db.commit()
    db.close()
    readonly = Catalog.in_folder(tmp_path, readonly=True)
    assert readonly.partitions("d")[0].ivf_file == "" and readonly.ivf("d") is None  # readable as it was
    readonly.close()
    catalog = Catalog.in_folder(tmp_path)
    columns = [row[1] for row in catalog.db.execute("PRAGMA table_info(partitions)")]
    assert columns[-2:] == ["ivf_file", "ivf_sha256"] and catalog.partitions("d")[0].count == 3


def test_a_changed_file_is_hashed_again(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"one")
    first = sha256_known(path)
    path.write_bytes(b"two")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns))  # content changed, ctime moves
    assert sha256_known(path) != first
