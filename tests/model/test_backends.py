"""The backends agree: OpenVINO and PyTorch give the same embeddings, the same identity, mixable indexes;
OpenVINO converts once per cache, picks its precision from the CPU, and falls back to PyTorch when it fails."""
import logging
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import lib.model.openvino_backend as openvino_backend
from lib.data.photos import write_photos
from lib.errors import ModelLoadError
from lib.ingest.image_index import build_image_index
from lib.model.backends import cpu_has_bf16, pick_backend
from lib.model.loading import load_encoder
from lib.settings import load_settings
from lib.store.catalog import CATALOG_NAME, Catalog
from lib.store.index_files import read_index, vectors_of

TEXTS = ["red", "a photo of two small blue squares on a striped background", "x y z",
         " ".join(["green star"] * 100), "a yellow triangle", "three purple circles"]
MIN_COSINE = 0.999  # what an index built by one backend and queried by the other needs


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1)


def random_pixels(encoder, count: int, seed: int = 0) -> np.ndarray:
    size = encoder.transform.crop_height
    return np.random.default_rng(seed).standard_normal((count, 3, size, size)).astype(np.float32)


@pytest.fixture(scope="module")
def demo_torch():
    return load_encoder("demo", backend="torch", precision="fp32")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("photos")
    write_photos(root, 6, seed=10)
    return root


def built_vectors(encoder, root: Path, workspace: Path) -> dict[str, np.ndarray]:
    """Build an index of `root` with `encoder` and read its vectors back, by file path."""
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="mix",
                                                        dataset_path=str(root), num_workers=0, batch_size=4))
    build_image_index(settings, encoder, progress=False)
    catalog = Catalog(settings.indexes_dir / CATALOG_NAME)
    paths = {record.id: record.path for record in catalog.images("mix")}
    found = {}
    for partition in catalog.partitions("mix"):
        ids, vectors = vectors_of(read_index(settings.indexes_dir / partition.index_file))
        found.update({paths[int(i)]: vector for i, vector in zip(ids, vectors, strict=True)})
    return found


RANK_TIE = 0.002  # cosine: 1 - MIN_COSINE of each vector, twice


def assert_backends_agree(openvino, pytorch, photos: Path, tmp_path: Path) -> None:
    """Same identity, same vectors for pixels, texts and a built index, whichever backend made them."""
    assert (openvino.backend, pytorch.backend) == ("openvino", "torch")
    assert openvino.identity == pytorch.identity and openvino.logit_scale == pytest.approx(pytorch.logit_scale)
    for batch in (1, 3):
        pixels = random_pixels(openvino, batch, seed=batch)
        assert cosines(openvino.encode_pixels(pixels), pytorch.encode_pixels(pixels)).min() >= MIN_COSINE
    assert cosines(openvino.encode_texts(TEXTS), pytorch.encode_texts(TEXTS)).min() >= MIN_COSINE
    assert cosines(openvino.encode_texts(TEXTS[:1]), pytorch.encode_texts(TEXTS[:1])).min() >= MIN_COSINE
    by_openvino = built_vectors(openvino, photos, tmp_path / "openvino")
    by_torch = built_vectors(pytorch, photos, tmp_path / "torch")
    assert sorted(by_openvino) == sorted(by_torch) and len(by_torch) == 6
    for path, vector in by_openvino.items():
        assert float(vector @ by_torch[path]) >= MIN_COSINE, path
    # An index built by either backend, queried by either: the same top 3, but for images the other query
    # scores within RANK_TIE of its third (two images that close may swap under bf16 rounding).
    for built in (by_torch, by_openvino):
        image_matrix = np.stack([built[path] for path in sorted(built)])
        for query in TEXTS[:3]:
            scores = [image_matrix @ encoder.encode_texts([query])[0] for encoder in (openvino, pytorch)]
            for mine, theirs in (scores, scores[::-1]):
                third = np.sort(theirs)[-3]
                assert all(theirs[i] >= third - RANK_TIE for i in np.argsort(-mine)[:3]), (query, mine, theirs)


def test_demo_backends_agree(demo_encoder, demo_torch, photos, tmp_path):
    assert_backends_agree(demo_encoder, demo_torch, photos, tmp_path)


def test_openvino_fp32_is_as_exact_as_pytorch(model_cache, demo_torch):
    encoder = load_encoder("demo", precision="fp32", cache_dir=model_cache)
    compiled = encoder.towers.compiled_property("INFERENCE_PRECISION_HINT")
    assert encoder.precision == "fp32" and compiled == {"image": "f32", "text": "f32"}
    pixels = random_pixels(encoder, 4)
    assert cosines(encoder.encode_pixels(pixels), demo_torch.encode_pixels(pixels)).min() >= 0.99999
    assert cosines(encoder.encode_texts(TEXTS), demo_torch.encode_texts(TEXTS)).min() >= 0.99999


def test_encoding_from_many_threads_gives_the_same_vectors(demo_encoder):
    """Each call has its own infer request: no 'request is busy', no input overwritten by another thread."""
    pixels = [random_pixels(demo_encoder, 3, seed=s) for s in range(6)]
    expected = [demo_encoder.encode_pixels(p) for p in pixels]
    got = [None] * len(pixels)

    def encode(i: int) -> None:
        for _ in range(5):
            got[i] = demo_encoder.encode_pixels(pixels[i])

    threads = [threading.Thread(target=encode, args=(i,)) for i in range(len(pixels))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-6)


def count_conversions(monkeypatch) -> list[int]:
    calls = []
    real = openvino_backend.convert

    def counted(*args):
        calls.append(1)
        return real(*args)

    monkeypatch.setattr(openvino_backend, "convert", counted)
    return calls


def test_second_load_reads_the_cache_instead_of_converting(model_cache, monkeypatch, demo_encoder):
    """demo_encoder converted the demo model into the session's cache; loading it again converts nothing."""
    calls = count_conversions(monkeypatch)
    second = load_encoder("demo", cache_dir=model_cache)
    assert calls == []
    [folder] = [f for f in (model_cache / "openvino").iterdir()
                if f.name.startswith(demo_encoder.identity.weights_sha256[:16])]
    assert {p.name for p in folder.iterdir()} >= {"vision.xml", "vision.bin", "text.xml", "text.bin", "meta.json"}
    np.testing.assert_allclose(second.encode_texts(TEXTS), demo_encoder.encode_texts(TEXTS), atol=1e-6)


def test_an_unwritable_cache_costs_a_conversion_not_the_backend(tmp_path, monkeypatch, caplog):
    calls = count_conversions(monkeypatch)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder("demo", cache_dir=blocked)
    assert encoder.backend == "openvino" and any("could not cache" in r.getMessage() for r in caplog.records)
    assert len(calls) == 1 and encoder.encode_texts(TEXTS[:1]).shape == (1, encoder.dim)


def test_falls_back_to_pytorch_when_openvino_is_missing(monkeypatch, caplog, demo_torch):
    import lib.model

    monkeypatch.setitem(sys.modules, "openvino", None)  # `import openvino` fails as if it were not installed
    monkeypatch.delitem(sys.modules, "lib.model.openvino_backend")  # so that the backend is imported afresh
    monkeypatch.delattr(lib.model, "openvino_backend")
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder("demo")
    assert encoder.backend == "torch" and encoder.identity == demo_torch.identity
    [line] = [r.getMessage() for r in caplog.records if "OpenVINO is not usable" in r.getMessage()]
    assert "ImportError" in line or "ModuleNotFoundError" in line


def test_falls_back_to_pytorch_when_conversion_fails(monkeypatch, caplog, demo_torch):
    def broken(*args):
        raise RuntimeError("Unsupported operation: aten::something_new\nmore detail")

    monkeypatch.setattr(openvino_backend, "convert", broken)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder("demo", precision="fp32")
    assert encoder.backend == "torch"
    assert [r.getMessage() for r in caplog.records if "OpenVINO" in r.getMessage()] == [
        "OpenVINO is not usable for demo (RuntimeError: Unsupported operation: aten::something_new); "
        "encoding with PyTorch"]
    np.testing.assert_allclose(encoder.encode_texts(TEXTS), demo_torch.encode_texts(TEXTS), atol=1e-6)


def test_falls_back_to_pytorch_when_compiling_fails(model_cache, monkeypatch, caplog, demo_torch):
    class NoCompile(openvino_backend.ov.Core):
        def compile_model(self, *args, **kwargs):
            raise RuntimeError("Exception from src/inference: no CPU plugin")

    encoder = load_encoder("demo", cache_dir=model_cache, precision="fp32")
    monkeypatch.setattr(openvino_backend.ov, "Core", NoCompile)
    with caplog.at_level(logging.WARNING):
        vectors = encoder.encode_texts(TEXTS)
    assert encoder.backend == "torch" and any("could not compile" in r.getMessage() for r in caplog.records)
    np.testing.assert_allclose(vectors, demo_torch.encode_texts(TEXTS), atol=1e-6)


def test_a_broken_checkpoint_is_an_error_not_a_fallback(tmp_path):
    import shutil

    from lib.model.loading import DEMO_MODEL_DIR

    folder = tmp_path / "broken"
    shutil.copytree(DEMO_MODEL_DIR, folder)
    (folder / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        load_encoder(str(folder), backend="openvino")


def test_backend_and_precision_choice():
    assert pick_backend("auto", torch.device("cpu")) == "openvino"
    assert pick_backend("auto", torch.device("cuda")) == "torch"
    assert pick_backend("torch", torch.device("cpu")) == "torch"
    with pytest.raises(ModelLoadError, match="unknown backend 'onnx'"):
        pick_backend("onnx", torch.device("cpu"))
    with pytest.raises(ModelLoadError, match="unknown precision"):
        load_encoder("demo", precision="int4")


class FakeCore:
    def __init__(self, capabilities: list[str]) -> None:
        self.capabilities = capabilities

    def get_property(self, device: str, name: str):
        assert (device, name) == ("CPU", "OPTIMIZATION_CAPABILITIES")
        return self.capabilities


def test_precision_auto_is_bf16_only_where_the_cpu_has_it():
    with_bf16, without = FakeCore(["BF16", "FP32", "INT8"]), FakeCore(["FP32", "INT8"])
    assert openvino_backend.image_precision("auto", with_bf16) == "bf16"
    assert openvino_backend.image_precision("auto", without) == "fp32"
    assert openvino_backend.image_precision("fp32", with_bf16) == "fp32"
    # OpenVINO's view of this CPU and /proc/cpuinfo's agree
    assert openvino_backend.cpu_has_native_bf16(openvino_backend.ov.Core()) == cpu_has_bf16()


def test_compiled_precision_is_what_was_asked(demo_encoder, model_cache):
    """OpenVINO would pick bf16 by itself on a bf16 CPU: the hint is always set, and what was chosen (auto's
    measured choice, or fp32 asked for) is what compiles."""
    hint = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
    demo_encoder.warm_up()
    compiled = demo_encoder.towers.compiled_property("INFERENCE_PRECISION_HINT")
    assert compiled["image"] == hint[demo_encoder.precision] and compiled["text"] in {"f32", "bf16"}
    fp32 = load_encoder("demo", cache_dir=model_cache, precision="fp32")
    assert fp32.towers.compiled_property("INFERENCE_PRECISION_HINT") == {"image": "f32", "text": "f32"}


def test_text_tower_stays_fp32_when_bf16_does_not_agree(tmp_path, monkeypatch, demo_torch):
    """The probe's verdict is taken at conversion (in a spawned child, which reports its cosine) and cached
    with the model: a fresh cache converts once."""
    calls = count_conversions(monkeypatch)
    monkeypatch.setattr(openvino_backend, "cpu_has_native_bf16", lambda core: True)  # the probe runs on any CPU
    monkeypatch.setattr(openvino_backend, "TEXT_BF16_MIN_COSINE", 1.01)  # a probe no bf16 tower can pass
    encoder = load_encoder("demo", cache_dir=tmp_path, precision="bf16")
    assert encoder.towers.compiled_property("INFERENCE_PRECISION_HINT")["text"] == "f32"
    assert cosines(encoder.encode_texts(TEXTS), demo_torch.encode_texts(TEXTS)).min() >= 0.99999
    monkeypatch.setattr(openvino_backend, "TEXT_BF16_MIN_COSINE", 0.0)  # would pass now, but is not asked again
    assert load_encoder("demo", cache_dir=tmp_path, precision="bf16").towers.precisions["text"] == "fp32"  # cached
    assert len(calls) == 1 and len(list((tmp_path / "openvino").iterdir())) == 1


def test_warm_up_compiles_with_the_threads_asked(model_cache, demo_encoder):
    encoder = load_encoder("demo", cache_dir=model_cache)
    encoder.warm_up(threads=1)
    assert encoder.towers.compiled_property("INFERENCE_NUM_THREADS") == {"image": "1", "text": "1"}
    pixels = random_pixels(encoder, 2)
    np.testing.assert_allclose(encoder.encode_pixels(pixels), demo_encoder.encode_pixels(pixels), atol=1e-6)


@pytest.mark.slow
def test_vit_b32_backends_agree_and_cache(model_cache, photos, tmp_path, monkeypatch):
    """random:ViT-B/32: the full architecture converts, agrees with PyTorch, and is cached (one conversion)."""
    calls = count_conversions(monkeypatch)
    pytorch = load_encoder("random:ViT-B/32", backend="torch", precision="fp32")
    float_precision = "bf16" if cpu_has_bf16() else "fp32"  # int8 has its own test of fidelity (test_int8.py)
    openvino = load_encoder("random:ViT-B/32", cache_dir=model_cache, precision=float_precision)
    assert_backends_agree(openvino, pytorch, photos, tmp_path)
    again = load_encoder("random:ViT-B/32", cache_dir=model_cache, precision=float_precision)
    assert len(calls) == 1 and again.identity == openvino.identity
