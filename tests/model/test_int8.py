"""int8 towers (NNCF) and `--precision auto`: quantized for real, measured against PyTorch fp32, chosen only
where fidelity holds, recorded once per model and CPU, and never compiled in a process that forks workers."""
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest

import lib.model.openvino_int8 as openvino_int8
from lib.errors import ModelLoadError
from lib.model import precision_choice, quantize
from lib.model.loading import load_encoder
from lib.model.quantize import Fidelity, fidelity

CALIBRATION_PIXELS = 8


@pytest.fixture(scope="module")
def demo_int8(model_cache):
    return load_encoder("demo", precision="int8", cache_dir=model_cache)


@pytest.fixture(scope="module")
def demo_fp32_torch():
    return load_encoder("demo", backend="torch", precision="fp32")


def ir_folder(model_cache, encoder):
    [folder] = [f for f in (model_cache / "openvino").iterdir()
                if f.name.startswith(encoder.identity.weights_sha256[:16]) and f.is_dir()]
    return folder


def test_the_int8_image_tower_is_quantized_and_stays_close_to_fp32(demo_int8, demo_fp32_torch, model_cache):
    """The demo model's int8 image tower: FakeQuantize layers in the IR, and embeddings of held-out pictures
    within the fidelity the choice recorded (min cosine 0.995 here)."""
    assert demo_int8.backend == "openvino" and demo_int8.towers.precisions["image"] == "int8"
    ops = {op.get_type_name() for op in demo_int8.towers._models["image"].get_ops()}
    assert "FakeQuantize" in ops
    pixels = quantize.generated_images(demo_int8.transform, 32, seed=7)
    got, expected = demo_int8.encode_pixels(pixels), demo_fp32_torch.encode_pixels(pixels)
    measured = fidelity(got, expected)
    assert 0.98 <= measured.min_cosine < 1.0  # changed by quantization, but not far
    assert not np.allclose(got, expected, atol=1e-5)
    meta = json.loads((openvino_int8.int8_folder(ir_folder(model_cache, demo_int8)) / "meta.json").read_text())
    assert meta["text_int8"] == (meta["text_min_cosine"] >= quantize.TEXT_INT8_MIN_COSINE)
    assert demo_int8.towers.precisions["text"] == ("int8" if meta["text_int8"] else "fp32")


def test_auto_records_its_measurement_and_picks_only_what_passed(demo_encoder, model_cache):
    """The session's demo encoder loaded with auto: the record for this CPU holds every candidate's speed and
    fidelity, and the precision chosen is one whose fidelity passed."""
    [path] = ir_folder(model_cache, demo_encoder).glob("precision-*.json")
    assert path == precision_choice.record_path(path.parent, precision_choice.cpu_signature())
    record = json.loads(path.read_text())
    assert set(record["speed_images_per_s"]) >= {"fp32", "int8"} and record["spec"] == "demo"
    int8 = Fidelity(**record["fidelity"]["int8"])
    assert 0.9 < int8.min_cosine < 1.0 and 0.0 < int8.recall_at_10 <= 1.0
    chosen = record["chosen"]
    assert chosen == demo_encoder.precision
    assert chosen == "fp32" or Fidelity(**record["fidelity"][chosen]).passes


def test_pick_never_takes_a_precision_that_failed_fidelity():
    good, bad = Fidelity(1.0, 1.0), Fidelity(0.99, 0.91)
    chosen, notes = precision_choice.pick({"fp32": 10.0, "bf16": 15.0, "int8": 30.0},
                                          {"fp32": good, "bf16": good, "int8": bad})
    assert chosen == "bf16"
    assert notes == ["int8 is 2.00x as fast but its recall@10 against PyTorch fp32 is 0.910 (< 0.97)"]
    assert precision_choice.pick({"fp32": 10.0, "int8": 30.0}, {"fp32": good, "int8": bad})[0] == "fp32"
    assert precision_choice.pick({"fp32": 10.0, "int8": 30.0}, {"fp32": good, "int8": good}) == ("int8", [])
    # within the timings' noise, the reference stays
    assert precision_choice.pick({"fp32": 10.0, "int8": 10.3}, {"fp32": good, "int8": good}) == ("fp32", [])


def test_fidelity_measures_rankings_not_just_cosines():
    rng = np.random.default_rng(0)
    expected = rng.standard_normal((64, 16))
    assert fidelity(expected, expected) == Fidelity(1.0, 1.0)
    assert fidelity(expected * 3.0, expected) == Fidelity(1.0, 1.0)  # scale is not a difference
    shuffled = fidelity(expected[rng.permutation(64)], expected)
    assert shuffled.recall_at_10 < 0.5 and not shuffled.passes
    slightly = fidelity(expected + 0.05 * rng.standard_normal((64, 16)), expected)
    assert slightly.min_cosine > 0.98 and slightly.recall_at_10 > shuffled.recall_at_10


def test_auto_reads_the_record_and_does_not_measure_again(tmp_path, monkeypatch, caplog):
    def measured():
        return {"speed_images_per_s": {"fp32": 10.0, "int8": 30.0}, "chosen": "fp32",
                "fidelity": {"fp32": {"min_cosine": 1.0, "recall_at_10": 1.0},
                             "int8": {"min_cosine": 0.99, "recall_at_10": 0.9}},
                "passed_over": ["int8 is 3.00x as fast but its recall@10 against PyTorch fp32 is 0.900 (< 0.97)"]}

    with caplog.at_level(logging.INFO):
        assert precision_choice.chosen_precision(tmp_path, "demo", measured) == "fp32"
    assert any("int8 is 3.00x as fast" in r.getMessage() for r in caplog.records)
    [record] = tmp_path.glob("precision-*.json")

    def fail():
        raise AssertionError("measured again")

    assert precision_choice.chosen_precision(tmp_path, "demo", fail) == "fp32"
    other_cpu = {**precision_choice.cpu_signature(), "flags": ["avx2", "amx_int8"]}
    monkeypatch.setattr(precision_choice, "cpu_signature", lambda: other_cpu)
    record.rename(precision_choice.record_path(tmp_path, other_cpu))
    assert precision_choice.chosen_precision(tmp_path, "demo", fail) == "fp32"  # another CPU's record, read
    monkeypatch.undo()
    with pytest.raises(AssertionError, match="measured again"):  # this CPU has none: it is measured
        precision_choice.chosen_precision(tmp_path, "demo", fail)


def test_a_record_that_cannot_be_written_costs_a_measurement_next_time(tmp_path, caplog):
    blocked = tmp_path / "ro"
    blocked.mkdir()
    os.chmod(blocked, 0o500)
    try:
        with caplog.at_level(logging.WARNING):
            assert precision_choice.chosen_precision(blocked, "demo", lambda: {
                "speed_images_per_s": {"fp32": 1.0}, "fidelity": {"fp32": {"min_cosine": 1, "recall_at_10": 1}},
                "chosen": "fp32", "passed_over": []}) == "fp32"
    finally:
        os.chmod(blocked, 0o700)
    if os.geteuid() != 0:  # root writes anyway
        assert any("could not record the precision choice" in r.getMessage() for r in caplog.records)


FORK_AFTER_LOAD = """
import os, sys
from pathlib import Path
import lib.model.openvino_backend as openvino_backend
from lib.model.loading import load_encoder
if sys.argv[3] == "probe":  # the text tower's bf16 probe runs at conversion, as on a CPU with native bf16
    openvino_backend.cpu_has_native_bf16 = lambda core: True
encoder = load_encoder("demo", precision=sys.argv[2], cache_dir=Path(sys.argv[1]))
pid = os.fork()
if pid == 0:
    print("child", encoder.precision, encoder.encode_texts(["a red star"]).shape, flush=True)
    os._exit(0)
os.waitpid(pid, 0)
"""


def fork_after_load(cache: Path, precision: str, probe: bool) -> str:
    """What a child forked after `load_encoder` in a fresh process prints when it encodes (a hang fails)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run([sys.executable, "-c", FORK_AFTER_LOAD, str(cache), precision,
                             "probe" if probe else "-"], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_a_worker_forked_after_auto_measured_still_encodes(model_cache, demo_encoder, tmp_path):
    """Measuring compiles models, and a process that compiled one hangs its forked children when they compile
    (gunicorn's preloading master and its workers): the measurement runs in a spawned process instead."""
    import shutil

    folder = ir_folder(model_cache, demo_encoder)
    copy = tmp_path / "openvino" / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("precision-*.json"))  # int8 IR kept: no quantizing
    assert fork_after_load(tmp_path, "auto", probe=False) == f"child {demo_encoder.precision} (1, 128)"
    assert len(list(copy.glob("precision-*.json"))) == 1


def test_a_worker_forked_after_the_bf16_text_probe_still_encodes(tmp_path):
    """The text tower's bf16 probe at conversion compiles too, so it runs in a spawned process as well: a
    fresh cache is converted and probed, and a child forked afterwards encodes."""
    assert fork_after_load(tmp_path, "fp32", probe=True) == "child fp32 (1, 128)"
    [meta] = (tmp_path / "openvino").glob("*/meta.json")
    assert json.loads(meta.read_text())["text_bf16"] is True  # the probe ran, and bf16 (f32 here) agreed


def test_int8_with_pytorch_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="precision int8 needs the OpenVINO backend"):
        load_encoder("demo", backend="torch", precision="int8")


def test_a_failed_measurement_keeps_openvino(tmp_path, monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("the child process died")

    monkeypatch.setattr(openvino_int8, "in_child", broken)
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder("demo", cache_dir=tmp_path)
    assert encoder.backend == "openvino" and encoder.precision in {"fp32", "bf16"}
    assert any("could not measure the precisions of demo (RuntimeError: the child process died)" in r.getMessage()
               for r in caplog.records)
    assert not list((tmp_path / "openvino").glob("*/precision-*.json"))  # nothing recorded: measured next time
