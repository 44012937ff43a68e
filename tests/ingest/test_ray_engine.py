"""The Ray engine: what a two-node Ray cluster on this machine builds, against the local engine's build."""
import os
import shutil
import signal
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.data.images import ExifFacts
from lib.errors import ModelLoadError
from lib.ingest.image_index import ImageIndexBuilder, build_image_index
from lib.ingest.ray_engine import NO_TIME, EncoderActor, RayEngine, decode_batch, encoded_files, encoder_options
from lib.serve.index_set import load_index_set
from lib.store.catalog import CATALOG_NAME, Catalog
from lib.store.dataset_index import open_dataset
from lib.store.index_files import read_index, vectors_of
from tests.helpers import share_model_cache
from tests.ingest.test_image_index import assert_consistent, settings_for


def vectors_by_path(settings, dataset: str) -> dict[tuple[str, int], np.ndarray]:
    """The vector of each row by its path and scene (-1 for a picture)."""
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    paths = {record.id: (record.path, record.scene) for record in catalog.images(dataset)}
    found = {}
    for partition in catalog.partitions(dataset):
        ids, vectors = vectors_of(read_index(settings.indexes_dir / partition.index_file, partition.index_sha256))
        found.update({paths[int(i)]: vector for i, vector in zip(ids, vectors, strict=True)})
    return found


def assert_ivf_layer(settings, dataset: str, dim: int):
    """The dataset is searched through IVF: every partition has lists holding exactly its vectors."""
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    record = catalog.ivf(dataset)
    assert record is not None
    opened = open_dataset(catalog, settings.indexes_dir, dataset, dim)
    assert opened.ivf is not None and not opened.exact_only
    for partition in catalog.partitions(dataset):
        assert opened.ivf.shards[partition.name].ntotal == partition.count
    return record


def test_decode_batch_keeps_bad_files_as_errors(tmp_path, demo_encoder):
    Image.new("RGB", (80, 60), "red").save(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    batch = {"i": np.array([7, 8, 9]), "path": np.array(["good.png", "broken.jpg", "missing.png"], dtype=object)}
    out = decode_batch(batch, str(tmp_path), demo_encoder.transform)
    side = demo_encoder.transform.crop_height
    assert out["i"].tolist() == [7, 8, 9] and out["pixels"].shape == (3, side, side, 3)
    assert out["pixels"].dtype == np.uint8 and [len(h) for h in out["perceptual_hash"]] == [107, 0, 0]
    assert out["taken_ns"].tolist() == [NO_TIME] * 3 and out["orientation"].tolist() == [1, 1, 1]
    assert out["error"][0] == "" and (out["width"][0], out["height"][0]) == (80, 60) and len(out["sha256"][0]) == 64
    assert "not an image" in out["error"][1] and "file not found" in out["error"][2]
    assert not out["pixels"][1].any()
    normalised = demo_encoder.transform.normalise(out["pixels"][:1])[0]
    np.testing.assert_array_equal(normalised, demo_encoder.transform(Image.open(tmp_path / "good.png")))


def test_an_actor_with_other_model_weights_refuses_to_encode(demo_encoder, model_cache):
    """Raised on the first call, where Ray hands the exception itself back to the driver (see RayConnection)."""
    options = encoder_options(settings_for(Path("/workspace"), Path("."), backend="openvino"))
    assert options == {"precision": "auto", "backend": "openvino", "cache_dir": Path("/workspace/cache")}
    actor = EncoderActor("demo", {**options, "cache_dir": model_cache}, "f" * 64, threads=1)
    side = demo_encoder.transform.crop_height
    batch = {"i": np.array([0]), "pixels": np.zeros((1, side, side, 3), np.uint8),
             "error": np.array([""], dtype=object)}
    with pytest.raises(ModelLoadError, match=rf"model 'demo' on a Ray worker has other weights "
                                             rf"\({demo_encoder.identity.weights_sha256[:12]}\) "
                                             r"than on the driver \(ffffffffffff\)"):
        actor(batch)
    good = EncoderActor("demo", {"precision": "fp32"}, demo_encoder.identity.weights_sha256, threads=1)
    out = good({**batch, "width": np.array([64]), "height": np.array([64]), "sha256": np.array(["x"]),
                "perceptual_hash": np.array([b""], dtype=object), "taken_ns": np.array([7])})
    assert out["vector"].shape == (1, demo_encoder.dim) and abs(np.linalg.norm(out["vector"][0]) - 1) < 1e-5
    assert "pixels" not in out and out["taken_ns"].tolist() == [7]  # every other column goes back to the driver


def test_encoded_files_drop_a_file_delivered_twice():
    def batch(indexes):
        n = len(indexes)
        return {"i": np.array(indexes), "vector": np.ones((n, 4), np.float32), "error": np.array(["", "bad"][:n]),
                "width": np.full(n, 5), "height": np.full(n, 6), "sha256": np.array(["ab"] * n),
                "perceptual_hash": np.array([b"p"] * n, dtype=object), "taken_ns": np.array([7, NO_TIME][:n]),
                "camera": np.array(["Canon EOS 5D", ""][:n], dtype=object), "orientation": np.array([6, 1][:n])}

    seen: set[int] = set()
    first = encoded_files(batch([3, 4]), seen)
    assert [(f.i, f.error, f.size) for f in first] == [(3, None, (5, 6)), (4, "bad", (5, 6))]
    assert first[0].vector.shape == (4,) and first[1].vector is None
    assert first[0].facts == ExifFacts(7, "Canon EOS 5D", 6) and first[1].facts == ExifFacts(None, "", 1)
    assert encoded_files(batch([4]), seen) == [] and seen == {3, 4}


@pytest.fixture(scope="module")
def two_node_cluster():
    """A Ray cluster of two nodes on this machine, one logical CPU each."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    yield cluster
    cluster.shutdown()


def ray_settings(workspace: Path, root: Path, cluster, model_cache: Path, **overrides):
    """Settings for a Ray build in `workspace`, whose actors read the session's converted models."""
    return settings_for(share_model_cache(workspace, model_cache), root, engine="ray", ray_address=cluster.address,
                        **overrides)


@pytest.mark.slow
def test_a_two_node_cluster_builds_what_the_local_engine_builds(tmp_path, tiny_dataset, demo_encoder,
                                                                 two_node_cluster, model_cache):
    """With the crossover lowered under the dataset's 72 images, so that index_type auto gives it an IVF layer
    (and the target recall, so that so few vectors are searched through their lists rather than exactly)."""
    root, images = tiny_dataset
    ivf = dict(dataset_name="tiny", ivf_min_vectors=40, target_recall=0.5)
    local = settings_for(tmp_path / "local", root, **ivf)
    on_ray = ray_settings(tmp_path / "ray", root, two_node_cluster, model_cache, **ivf)
    build_image_index(local, demo_encoder, progress=False)
    report = build_image_index(on_ray, demo_encoder, progress=False)
    assert report.encoded == len(images) and not report.skipped
    def rows(catalog):
        return {(r.path, r.partition, r.width, r.height, r.sha256, r.perceptual_hash, r.capture, r.folder)
                for r in catalog.images("tiny")}

    local_rows, ray_rows = rows(Catalog(local.indexes_dir / CATALOG_NAME)), rows(assert_consistent(on_ray, "tiny"))
    assert ray_rows == local_rows
    expected, got = vectors_by_path(local, "tiny"), vectors_by_path(on_ray, "tiny")
    assert got.keys() == expected.keys()
    cosines = [float(np.dot(expected[path], got[path])) for path in expected]
    assert min(cosines) >= 0.999  # an IVF dataset's exact files hold float16 copies
    on_ray_layer = assert_ivf_layer(on_ray, "tiny", demo_encoder.dim)
    local_layer = assert_ivf_layer(local, "tiny", demo_encoder.dim)
    assert on_ray_layer.nlist == local_layer.nlist
    dataset = load_index_set(on_ray.indexes_dir, on_ray.indexes_text_dir, demo_encoder.identity).datasets["tiny"]
    assert dataset.ivf.nprobe > 0
    for image_id in [r.id for r in Catalog(on_ray.indexes_dir / CATALOG_NAME).images("tiny")][::10]:
        assert image_id in dataset.search(dataset.vector(image_id), 3)[1][0]


@pytest.mark.slow
def test_videos_on_the_cluster_give_the_scenes_the_local_engine_gives(tmp_path, demo_encoder, two_node_cluster,
                                                                       model_cache, video_workspace):
    local, _ = video_workspace
    on_ray = ray_settings(tmp_path / "ray", local.dataset_path, two_node_cluster, model_cache, dataset_name="mixed",
                          calibration_images=0)
    report = build_image_index(on_ray, demo_encoder, progress=False)
    assert (report.videos, report.scenes) == (1, 3) and list(report.skipped) == ["clips/truncated.mp4"]

    def rows(catalog):
        return {(r.path, r.scene, r.video_start, r.video_end, r.frame_s, r.sha256, r.perceptual_hash, r.width,
                 r.capture) for r in catalog.images("mixed")}

    assert rows(assert_consistent(on_ray, "mixed")) == rows(Catalog(local.indexes_dir / CATALOG_NAME))
    expected, got = vectors_by_path(local, "mixed"), vectors_by_path(on_ray, "mixed")
    assert min(float(np.dot(expected[path], got[path])) for path in expected) >= 0.999


def worker_pids_of(cluster, title: str) -> list[int]:
    """Processes of this cluster's raylets (and so of this test) whose Ray process title holds `title`."""
    raylets = {info.process.pid for node in [cluster.head_node, *cluster.worker_nodes]
               for info in node.all_processes.get("raylet", [])}
    found = []
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (proc / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if parent in raylets and title.encode() in command:
            found.append(int(proc.name))
    return found


class KillingEngine:
    """The Ray engine, with every encoder actor process killed (SIGKILL) once the first batch is back."""

    def __init__(self, engine: RayEngine, cluster) -> None:
        self.engine, self.cluster = engine, cluster
        self.killed: set[int] = set()
        self.restarted: set[int] = set()  # encoder processes seen after the kill
        self.after_kill = 0  # images handed back after the kill

    def encode(self, root, files, regions=False):
        for batch in self.engine.encode(root, files, regions):
            if self.killed:
                self.after_kill += len(batch)
                self.restarted |= set(worker_pids_of(self.cluster, "EncoderActor")) - self.killed
            else:
                self.killed = set(worker_pids_of(self.cluster, "EncoderActor"))
                for pid in self.killed:
                    os.kill(pid, signal.SIGKILL)
            yield batch


@pytest.mark.slow
def test_an_encoder_actor_killed_mid_build_still_indexes_every_image_once(tmp_path, tiny_dataset,
                                                                         two_node_cluster, model_cache):
    """ViT-B/32 (random weights, PyTorch) on one thread per actor: slow enough that most batches are still to do."""
    from lib.model.loading import load_encoder

    root, images = tiny_dataset
    encoder = load_encoder("random:ViT-B/32", backend="torch")
    settings = ray_settings(tmp_path, root, two_node_cluster, model_cache, dataset_name="tiny", batch_size=2,
                            model="random:ViT-B/32", backend="torch")
    engine = KillingEngine(RayEngine(settings, encoder), two_node_cluster)
    report = ImageIndexBuilder(settings, encoder, progress=False, engine=engine).run()
    assert engine.killed and engine.restarted and engine.after_kill > len(images) / 2
    assert report.encoded == len(images) and not report.skipped
    rows = assert_consistent(settings, "tiny").images("tiny")
    assert sorted(r.path for r in rows) == sorted(image.path.relative_to(root).as_posix() for image in images)


class CountingEngine:
    def __init__(self, engine: RayEngine) -> None:
        self.engine = engine
        self.handed: list[str] = []

    def encode(self, root, files, regions=False):
        self.handed += [file.path for file in files]
        yield from self.engine.encode(root, files, regions)


@pytest.mark.slow
def test_an_incremental_run_on_the_cluster_encodes_only_the_changed_files(tmp_path, tiny_dataset, demo_encoder,
                                                                         two_node_cluster, model_cache):
    root = tmp_path / "data"
    shutil.copytree(tiny_dataset[0], root)
    settings = ray_settings(tmp_path / "ws", root, two_node_cluster, model_cache, dataset_name="tiny",
                            ivf_min_vectors=40)
    first = build_image_index(replace(settings, engine="local"), demo_encoder, progress=False)  # either engine
    trained = assert_ivf_layer(settings, "tiny", demo_encoder.dim)
    folder = root / "train" / "n90000000" / "images"
    changed, removed = sorted(folder.iterdir())[:2]
    Image.new("RGB", (64, 64), "white").save(changed, "JPEG")
    removed.unlink()
    Image.new("RGB", (50, 70), "black").save(folder / "added.JPEG", "JPEG")
    (folder / "broken.JPEG").write_bytes(changed.read_bytes()[:200])
    engine = CountingEngine(RayEngine(settings, demo_encoder))
    report = ImageIndexBuilder(settings, demo_encoder, progress=False, engine=engine).run()
    prefix = "train/n90000000/images/"
    assert sorted(engine.handed) == sorted(prefix + name for name in (changed.name, "added.JPEG", "broken.JPEG"))
    assert (report.added, report.changed, report.removed, report.encoded) == (2, 1, 1, 2)
    assert list(report.skipped) == [prefix + "broken.JPEG"] and "truncated" in report.skipped[prefix + "broken.JPEG"]
    assert report.partitions_written == 1
    catalog = assert_consistent(settings, "tiny")
    assert len(catalog.images("tiny")) == first.encoded  # one removed, one added
    rows = {r.path: r for r in catalog.images("tiny")}
    assert (rows[prefix + "added.JPEG"].width, rows[prefix + "added.JPEG"].height) == (50, 70)
    # the changed partition was encoded into the dataset's quantizer, without retraining
    assert assert_ivf_layer(settings, "tiny", demo_encoder.dim).quantizer_sha256 == trained.quantizer_sha256


@pytest.mark.slow
def test_ocr_actors_on_the_cluster_read_what_the_local_pool_reads(tmp_path, demo_encoder, two_node_cluster,
                                                                  model_cache):
    from tests.ingest.test_ocr_build import read_texts, write_sign

    root = tmp_path / "signs"
    root.mkdir()
    for n, words in enumerate(("ZANZIBAR", "FERRY TIMETABLE", "BAKERY")):
        write_sign(root / f"sign_{n}.jpg", words, 310 + n)
    Image.new("RGB", (320, 240), "grey").save(root / "plain.png")
    local = settings_for(share_model_cache(tmp_path / "local", model_cache), root, dataset_name="signs", ocr="on",
                         ocr_workers=1)
    on_ray = ray_settings(tmp_path / "ray", root, two_node_cluster, model_cache, dataset_name="signs", ocr="on")
    build_image_index(local, demo_encoder, progress=False)
    report = build_image_index(on_ray, demo_encoder, progress=False)
    assert (report.words_read, report.words_found, report.unread) == (4, 3, {})
    assert read_texts(on_ray) == read_texts(local) == {"sign_0.jpg": "ZANZIBAR", "sign_1.jpg": "FERRY TIMETABLE",
                                                       "sign_2.jpg": "BAKERY", "plain.png": ""}
    assert build_image_index(on_ray, demo_encoder, progress=False).words_read == 0
