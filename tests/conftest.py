"""Shared fixtures: the demo encoder (loaded once) and small generated datasets."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
for _name in [n for n in os.environ if n.startswith("CLIPSEARCH_")]:
    del os.environ[_name]  # the tests choose their own settings

import numpy as np  # noqa: E402

from lib.data.synthetic import SyntheticImage, generate_dataset  # noqa: E402
from lib.data.synthetic_vectors import Mixture, write_mixture  # noqa: E402
from lib.model.encoder import ClipEncoder  # noqa: E402
from lib.model.loading import load_encoder  # noqa: E402
from tests.helpers import share_model_cache  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def pytest_runtest_teardown(item, nextitem):
    """After every test, an alternate signal stack this process owns (lib/ingest/signal_stack.keep_own_stack):
    OpenVINO replaces the main thread's with one of its own, and the process died on it (SIGSEGV, SI_KERNEL,
    delivering a SIGCHLD on an AMX machine). After a test that made this process a Ray driver, faulthandler's
    handlers again: ray.init replaces them and ray.shutdown leaves none (so a crash afterwards printed no
    stack). Ray also left its alternate signal stack installed, on which the test process died the same way;
    lib/ingest/signal_stack.py now puts it back, and tests/ingest/test_signal_stack.py checks that."""
    from lib.ingest.signal_stack import keep_own_stack

    keep_own_stack()
    if "ray" not in item.module.__name__:
        return
    import faulthandler

    from _pytest.faulthandler import fault_handler_stderr_fd_key

    fd = item.config.stash.get(fault_handler_stderr_fd_key, None)
    if fd is not None:
        faulthandler.disable()  # enable() alone does nothing while it believes it is enabled
        faulthandler.enable(file=fd, all_threads=True)


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One OpenVINO model cache for the session, so that each model converts once."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def demo_encoder(model_cache: Path) -> ClipEncoder:
    return load_encoder("demo", cache_dir=model_cache)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[SyntheticImage]]:
    """Two training images per class and one validation image, with three captions each."""
    root = tmp_path_factory.mktemp("tiny-dataset")
    images = generate_dataset(root, seed=3, per_class=2, val_per_class=1, captions_per_image=3)
    return root, images


@pytest.fixture(scope="session")
def other_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_dataset) -> Path:
    """A small untrained CLIP with the demo model's embedding size but other weights."""
    import torch

    from lib.model.small_clip import Architecture, new_model
    from lib.model.train import all_captions, save_model

    torch.manual_seed(1)
    root, _ = tiny_dataset
    model, tokenizer, transform = new_model(all_captions(root), Architecture(width=32, layers=1, heads=2, image_size=32,
                                                               patch_size=16), vocab_size=300)
    folder = tmp_path_factory.mktemp("other-model") / "model"
    save_model(folder, model, tokenizer, transform)
    return folder


@pytest.fixture(scope="session")
def built_workspace(tmp_path_factory: pytest.TempPathFactory, tiny_dataset, demo_encoder, model_cache):
    """A workspace with the tiny dataset's image indexes and its words.txt vocabulary, built with the demo model."""
    from lib.data.vocabulary import read_vocabulary
    from lib.ingest.image_index import build_image_index
    from lib.ingest.text_index import build_text_index
    from lib.settings import load_settings

    root, _ = tiny_dataset
    workspace = share_model_cache(tmp_path_factory.mktemp("workspace"), model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="tiny",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, demo_encoder, progress=False)
    entries, stats = read_vocabulary(str(root / "words.txt"), settings.cache_dir)
    build_text_index("tiny", entries, stats, demo_encoder, settings.indexes_text_dir, settings.cache_dir,
                     progress=False)
    return settings


MIXTURE = Mixture(dim=128, clusters=120, seed=4)  # the demo model's dimension, so it can serve them


@pytest.fixture(scope="session")
def mixture_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12,000 float16 embeddings of a 128-d Gaussian mixture in 12 classes, as a clip-retrieval folder (3 parts)."""
    folder = tmp_path_factory.mktemp("mixture") / "embeddings"
    write_mixture(folder, 12_000, MIXTURE, classes=12, part_rows=5_000, chunk=4_000)
    return folder


def ivf_settings(workspace: Path, **overrides):
    """Settings of a test workspace whose datasets of 2,000 vectors or more are searched through IVF."""
    from lib.settings import load_settings

    values = dict(workspace=str(workspace), dataset_name="mix", ivf_min_vectors=2_000, num_workers=0)
    return load_settings(environ={}, overrides={**values, **overrides})


@pytest.fixture(scope="session")
def ivf_workspace(tmp_path_factory: pytest.TempPathFactory, mixture_folder, demo_encoder):
    """The mixture imported as dataset 'mix' (one partition per class), searched through IVF."""
    from lib.ingest.embeddings_import import import_embeddings

    settings = ivf_settings(tmp_path_factory.mktemp("ivf-workspace"))
    import_embeddings(settings, demo_encoder, mixture_folder, class_column="class", progress=False)
    return settings


@pytest.fixture(scope="session")
def postgres():
    """A packaged PostgreSQL 18 with pgvector (lib/ingest/packaged_postgres.py), stopped as the session ends.

    Stopped here with pg_ctl rather than by pgserver at exit: pgserver kills the server process it started,
    and after a test has restarted the server that is another process, which was left running. Its folder is
    not under pytest's: run as root, the server runs as the user `pgserver`, and every pytest session started
    meanwhile (another run beside this one) takes the others' access to /tmp/pytest-of-root away again, which
    stopped the server's pg_ctl ("Permission denied") mid-run."""
    import contextlib
    import shutil
    import tempfile

    from lib.ingest.packaged_postgres import PackagedPostgres

    folder = Path(tempfile.mkdtemp(prefix="clipsearch-test-postgres-"))
    folder.chmod(0o755)
    server = PackagedPostgres(folder / "data", stop_at_exit=False)
    yield server
    with contextlib.suppress(subprocess.CalledProcessError):  # a test left it stopped
        server.stop()
    shutil.rmtree(folder, ignore_errors=True)


def held_out(count: int = 200, seed: int = 99) -> np.ndarray:
    """Queries from the mixture that are not in any folder."""
    return MIXTURE.sample(count, np.random.default_rng(seed))[0]


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[:10]) & set(t[:10])) / 10 for f, t in zip(found, truth, strict=True)]))


@pytest.fixture(scope="session")
def planted_workspace(tmp_path_factory: pytest.TempPathFactory, model_cache: Path):
    """A workspace whose dataset "planted" holds duplicates of known tier (lib/data/duplicate_set.py), built
    with the demo model, which calibrates its duplicate thresholds; yields the settings and the planted files."""
    from lib.data.duplicate_set import generate_duplicate_set
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root = tmp_path_factory.mktemp("planted")
    files = generate_duplicate_set(root, seed=2, per_class=4, planted_share=0.3)
    workspace = share_model_cache(tmp_path_factory.mktemp("planted-workspace"), model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="planted",
                                                        dataset_path=str(root), num_workers=0))
    # fp32 so that the tier floors do not depend on the CPU: bf16 rounding (AMX here) moved near recall
    # below the floor the tests hold
    build_image_index(settings, load_encoder("demo", precision="fp32", cache_dir=model_cache), progress=False)
    return settings, files


@pytest.fixture(scope="session")
def video_workspace(tmp_path_factory: pytest.TempPathFactory, demo_encoder, model_cache):
    """A workspace whose dataset "mixed" holds a video of three known scenes (lib/data/synthetic_video.py's
    write_video_folder), a truncated video and two pictures, built with the demo model; yields the settings
    and the video's cut times."""
    from lib.data.synthetic_video import write_video_folder
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root = tmp_path_factory.mktemp("mixed")
    cuts = write_video_folder(root)
    workspace = share_model_cache(tmp_path_factory.mktemp("video-workspace"), model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="mixed",
                                                        dataset_path=str(root), num_workers=0,
                                                        calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    return settings, cuts


def write_collage_folder(root: Path) -> dict[str, list]:
    """Ten pictures of the demo model's classes (one a class), a 2x2 collage of the first four and a page
    screenshot holding the next two; returns each composite's file name with its parts' file names and boxes."""
    import random

    from lib.data.synthetic import Scene, draw_scene
    from lib.data.synthetic_collages import grid_collage, screenshot

    root.mkdir(parents=True, exist_ok=True)
    classes = [("red", "circle"), ("green", "square"), ("blue", "triangle"), ("yellow", "star"), ("purple", "cross"),
               ("orange", "ring"), ("red", "star"), ("blue", "circle"), ("green", "ring"), ("yellow", "square")]
    photos = [draw_scene(Scene(colour, shape, 1, "large", "plain"), random.Random(i), size=224)
              for i, (colour, shape) in enumerate(classes)]
    for i, photo in enumerate(photos):
        photo.save(root / f"photo_{i}.jpg", quality=90)
    collage = grid_collage(photos[:4], 2, 200, 16, (255, 255, 255))
    collage.image.save(root / "collage.jpg", quality=92)
    page = screenshot(photos[4:6], random.Random(5))
    page.image.save(root / "page.png")
    return {"collage.jpg": list(zip([f"photo_{i}.jpg" for i in range(4)], collage.boxes, strict=True)),
            "page.png": list(zip(["photo_4.jpg", "photo_5.jpg"], page.boxes, strict=True))}


@pytest.fixture(scope="session")
def regions_workspace(tmp_path_factory: pytest.TempPathFactory, demo_encoder, model_cache):
    """write_collage_folder's pictures as dataset "parts", built with regions on; yields the settings and the
    composites' parts."""
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings

    root = tmp_path_factory.mktemp("parts")
    parts = write_collage_folder(root)
    workspace = share_model_cache(tmp_path_factory.mktemp("regions-workspace"), model_cache)
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="parts",
                                                        dataset_path=str(root), num_workers=0, regions="on",
                                                        calibration_images=0))
    build_image_index(settings, demo_encoder, progress=False)
    return settings, parts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(workspace: Path, log: Path, **settings: str):
    """scripts/api.sh (nginx in front of 2 gunicorn workers) on a free loopback port over the workspace,
    dropping a stalled request after 3 s, with any other settings given; yields its base URL and the api.sh
    process."""
    port = free_port()
    env = {**os.environ, "CLIPSEARCH_WORKSPACE": str(workspace), "CLIPSEARCH_CLIENT_TIMEOUT": "3",
           **{f"CLIPSEARCH_{name.upper()}": value for name, value in settings.items()}}
    process = subprocess.Popen([str(REPO / "scripts" / "api.sh"), "--port", str(port), "--workers", "2",
                                "--threads", "2"], cwd=REPO, env=env, stdout=open(log, "w"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:  # nginx answers 502 until gunicorn is up
        try:
            if requests.get(f"{base}/health", timeout=2).ok:
                break
        except (requests.ConnectionError, requests.Timeout):  # not bound yet, or workers still warming up
            pass
        time.sleep(0.5)
    else:
        stop_group(process)
        pytest.fail("api.sh did not answer /health in 90 s:\n" + log.read_text()[-3000:])
    yield base, process
    stop_group(process)


@pytest.fixture(scope="session")
def live_server(built_workspace, tmp_path_factory: pytest.TempPathFactory):
    """scripts/api.sh over the built workspace."""
    yield from serve(built_workspace.workspace, tmp_path_factory.mktemp("server") / "api.log")


@pytest.fixture(scope="session")
def planted_server(planted_workspace, tmp_path_factory: pytest.TempPathFactory):
    """scripts/api.sh over the workspace with planted duplicates."""
    yield from serve(planted_workspace[0].workspace, tmp_path_factory.mktemp("planted-server") / "api.log")


@pytest.fixture(scope="session")
def video_server(video_workspace, tmp_path_factory: pytest.TempPathFactory):
    """scripts/api.sh over the workspace whose dataset "mixed" holds a video of three scenes and two pictures."""
    yield from serve(video_workspace[0].workspace, tmp_path_factory.mktemp("video-server") / "api.log")


def stop_group(process: subprocess.Popen, grace: float = 30) -> None:
    """Stop api.sh and everything it started (nginx, gunicorn and its workers: one session), killing what a
    SIGTERM has not stopped within the grace time, so no test leaves a server behind."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass
    except ProcessLookupError:
        return
    deadline = time.time() + grace
    while time.time() < deadline:  # api.sh is gone; its children may still be finishing
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=5)
