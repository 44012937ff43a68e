#!/usr/bin/env python3
"""Words in pictures (OCR): how fast RapidOCR reads, how many rendered words it finds, what it costs a build.

  speed     images/s of one reader (2 threads) per engine and detection size, on 800x600 photo-like pictures
            without words, the same with two signs of words, and 1280x800 screenshots of 11 px text
  pool      the chosen configuration (lib/model/ocr_reader defaults) from files: 1 process x 2 threads
            against the build's 2 processes x 1 thread
  recall    words found among those rendered (lib/data/rendered_words: several fonts, turned up to 15
            degrees, on photo-like grounds) by cap height, and stray boxes kept on photos without words
  build     build_image_index with the demo model on a folder of JPEGs (one in ten with words), OCR off and on:
            total seconds, and seconds until the index is searchable
Targets (issue 24, 2 cores): >= 10 images/s for photos, >= 2 images/s for screenshots; recall >= 0.9 for
words of 16 px and more; OCR does not change the time until the index is searchable.

    flock -w 3600 /tmp/clipsearch-cpu.lock .venv/bin/python -m bench.ocr_speed

--smoke: the default engine at 640 px only, a few pictures of each kind, 8 JPEGs in the build.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import multiprocessing
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple
from unittest import mock

from PIL import Image

from bench import SmokeParser, link_model_cache
from bench.encode_speed import cpu_features
from lib.cli import run
from lib.data.photos import write_photos
from lib.data.rendered_words import RenderedWords, photo_with_words, photo_without_words, screenshot
from lib.ingest import image_index
from lib.ingest.image_index import build_image_index
from lib.ingest.words_stage import WordsStage
from lib.model.loading import load_encoder
from lib.model.ocr_reader import DETECTION_SIDE, OcrOptions, OcrReader, choose_engine, installed_engines
from lib.settings import load_settings

KINDS = ("photos without words", "photos with words", "screenshots")
PHOTO_TARGET, SCREENSHOT_TARGET, RECALL_TARGET, RECALL_FROM = 10.0, 2.0, 0.9, 16
SIGN_HEIGHTS = (12, 16, 20, 24, 32)  # the cap heights of the speed table's photos with words, in turn
SMOKE = dict(engines=[], sides=["640"], pictures=2, screenshots=1, heights=[16], per_height=2, recall_sides=["640"],
             blank=4, build_images=8, builds=["off", "on"])


class Side(NamedTuple):
    """A detection size: `pixels` on the longer side ("max", ours) or the shorter one ("min", RapidOCR's)."""
    pixels: int
    limit: str

    @classmethod
    def parse(cls, text: str) -> Side:
        pixels, _, limit = text.partition("-")
        return cls(int(pixels), limit or "max")

    def __str__(self) -> str:
        return f"{self.pixels}" if self.limit == "max" else f"{self.pixels} on the short side (RapidOCR's default)"


def options(engine: str, side: Side, threads: int) -> OcrOptions:
    return OcrOptions(engine=engine, detection_side=side.pixels, detection_limit=side.limit, threads=threads,
                      time_limit_s=0)


def samples(count: int, screenshots: int) -> dict[str, list[RenderedWords]]:
    """The speed table's pictures, the same for every configuration."""
    return {KINDS[0]: [photo_without_words(500 + i) for i in range(count)],
            KINDS[1]: [photo_with_words(SIGN_HEIGHTS[i % len(SIGN_HEIGHTS)], 600 + i, signs=2) for i in range(count)],
            KINDS[2]: [screenshot(700 + i) for i in range(screenshots)]}


def rate(reader: OcrReader, pictures: list[RenderedWords]) -> float:
    """Images/s of reading `pictures` one after another (decoded already: the models' time alone)."""
    started = time.perf_counter()
    for picture in pictures:
        reader.read_picture(picture.image)
    return len(pictures) / (time.perf_counter() - started)


def speed_rows(args: argparse.Namespace, pictures: dict[str, list[RenderedWords]]) -> list[tuple]:
    rows = []
    for engine in args.engines:
        for side in map(Side.parse, args.sides):
            reader = OcrReader(options(engine, side, 2))
            for kind in KINDS:
                reader.read_picture(pictures[kind][0].image)  # warm-up: loads the models, compiles the shapes
            rates = [rate(reader, pictures[kind]) for kind in KINDS]
            meets = rates[0] >= PHOTO_TARGET and rates[1] >= PHOTO_TARGET and rates[2] >= SCREENSHOT_TARGET
            rows.append((engine, str(side), *rates, "**yes**" if meets else "no"))
            print(f"  {engine} {side}: {', '.join(f'{r:.2f}' for r in rates)} images/s", flush=True)
    return rows


_reader: OcrReader | None = None


def _start(reader_options: OcrOptions) -> None:
    """In each pool process: one reader, its models loaded on a blank picture."""
    global _reader
    _reader = OcrReader(reader_options)
    _reader.read_picture(Image.new("RGB", (64, 64), "white"))


def _read(path: str) -> int:
    assert _reader is not None, "started by _start"
    return len(_reader.read(Path(path)))


def _wait(seconds: float) -> None:
    time.sleep(seconds)


def pool_rates(files: dict[str, list[Path]], workers: int, threads: int, engine: str) -> list[float]:
    """Images/s of each kind of file for `workers` reader processes of `threads` threads each, once every process
    has loaded its models (as in the build's pool, decoding each file included); one pool for all kinds."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start,
                             initargs=(options(engine, Side(DETECTION_SIDE, "max"), threads),)) as pool:
        list(pool.map(_wait, [0.5] * workers))  # every process started and its models loaded
        rates = []
        for kind in KINDS:
            paths = [str(p) for p in files[kind]]
            list(pool.map(_read, paths[:workers]))  # and its first shapes of this kind compiled
            started = time.perf_counter()
            list(pool.map(_read, paths))
            rates.append(len(paths) / (time.perf_counter() - started))
        return rates


def write_samples(pictures: dict[str, list[RenderedWords]], folder: Path) -> dict[str, list[Path]]:
    """The pictures as files: photos as JPEG (quality 90), screenshots as PNG."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[Path]] = {}
    for k, kind in enumerate(KINDS):
        suffix = ".png" if kind == "screenshots" else ".jpg"
        files[kind] = [folder / f"{k}_{i:03d}{suffix}" for i in range(len(pictures[kind]))]
        for picture, path in zip(pictures[kind], files[kind], strict=True):
            picture.image.save(path, quality=90)
    return files


def pool_rows(engine: str, files: dict[str, list[Path]]) -> list[tuple]:
    rows = []
    for workers, threads in ((1, 2), (2, 1)):
        rates = pool_rates(files, workers, threads, engine)
        meets = min(rates[:2]) >= PHOTO_TARGET and rates[2] >= SCREENSHOT_TARGET
        rows.append((f"{engine} {DETECTION_SIDE}", f"{workers} x {threads}", *rates, "**yes**" if meets else "no"))
        print(f"  pool {workers} x {threads}: {', '.join(f'{r:.2f}' for r in rates)} images/s", flush=True)
    return rows


def found_words(reader: OcrReader, picture: RenderedWords) -> int:
    """How many of the picture's words appear, case-folded, in the joined text of the kept boxes."""
    text = " ".join(box.text for box in reader.read_picture(picture.image)).casefold()
    return sum(word.casefold() in text for word in picture.words)


def recall_rows(args: argparse.Namespace, engine: str) -> list[tuple]:
    rows = []
    for side in map(Side.parse, args.recall_sides):
        reader = OcrReader(options(engine, side, 2))
        for height in args.heights:
            pictures = [photo_with_words(height, 10_000 * height + i, signs=2) for i in range(args.per_height)]
            words = sum(len(p.words) for p in pictures)
            recall = sum(found_words(reader, p) for p in pictures) / max(1, words)
            target = ("**yes**" if recall >= RECALL_TARGET else "**no**") if height >= RECALL_FROM else "-"
            rows.append((f"{engine} {side}", height, len(pictures), words, f"{recall:.3f}", target))
        stray = sum(len(reader.read_picture(photo_without_words(20_000 + i).image)) for i in range(args.blank))
        rows.append((f"{engine} {side}", "no words", args.blank, 0, f"{100 * stray / args.blank:.1f} stray boxes "
                     "kept per 100 photos", "~0"))
        print(f"  recall at {side} done", flush=True)
    return rows


def write_build_folder(folder: Path, count: int) -> int:
    """`count` 800x600 photo-like JPEGs, one in ten with a sign of words (16-32 px); returns how many have words."""
    write_photos(folder, count - count // 10, 800, 600, seed=3000)
    for i in range(count // 10):
        photo_with_words((16, 24, 32)[i % 3], 4000 + i).image.save(folder / f"words_{i:04d}.jpg", quality=90)
    return count // 10


@contextmanager
def timeline() -> Iterator[dict[str, float]]:
    """Marks the moments of a build: 'searchable' when the builder remembers the dataset's choices (right after
    the last partition, the IVF layer and the catalog's good copy are committed, and before the words are
    read to the end), 'words_start' and 'words_end' around WordsStage.finish."""
    marks: dict[str, float] = {}
    remember, finish = image_index.remember_choice, WordsStage.finish

    def remembered(*a: Any, **k: Any) -> None:
        marks["searchable"] = time.perf_counter()
        remember(*a, **k)

    def finished(stage: WordsStage) -> None:
        marks["words_start"] = time.perf_counter()
        finish(stage)
        marks["words_end"] = time.perf_counter()

    with mock.patch.object(image_index, "remember_choice", remembered), \
            mock.patch.object(WordsStage, "finish", finished):
        yield marks


def build_row(encoder: Any, folder: Path, workspace: Path, ocr: str, count: int) -> tuple:
    settings = load_settings(environ={}, overrides=dict(workspace=str(link_model_cache(workspace)),
                                                        dataset_name="ocrbench", dataset_path=str(folder), ocr=ocr,
                                                        model="demo"))
    with timeline() as marks:
        started = time.perf_counter()
        report = build_image_index(settings, encoder, progress=False, rebuild=True)
        total = time.perf_counter() - started
    assert report.encoded == count, f"the benchmark folder did not build cleanly: {report.encoded} of {count}"
    searchable = marks["searchable"] - started
    if "words_start" not in marks:
        return (f"ocr={ocr}", count, total, searchable, "-", "-", "-")
    tail = marks["words_end"] - marks["words_start"]
    return (f"ocr={ocr}", count, total, searchable, tail, report.words_read, report.words_found)


def build_rows(args: argparse.Namespace, tmp: Path) -> tuple[list[tuple], int]:
    folder = tmp / "build-photos"
    with_words = write_build_folder(folder, args.build_images)
    encoder = load_encoder("demo", cache_dir=link_model_cache(tmp / "model") / "cache")
    rows = [build_row(encoder, folder, tmp / f"workspace-{i}", ocr, args.build_images)
            for i, ocr in enumerate(args.builds)]
    print("  builds done", flush=True)
    return rows, with_words


def table(header: Sequence[str], rows: list[tuple]) -> None:
    print("\n| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row) + " |")


def versions() -> str:
    found = [f"{name} {importlib.metadata.version(name)}" for name in ("rapidocr", "onnxruntime", "openvino")
             if importlib.util.find_spec(name) is not None]
    return ", ".join(found)


def timed(label: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    print(f"{label} ...", flush=True)
    result = step()
    print(f"{label}: {time.perf_counter() - started:.0f} s", flush=True)
    return result


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--engines", nargs="*", default=installed_engines(),
                        help="engines of the speed table (none given: the default one)")
    parser.add_argument("--sides", nargs="+", default=["480", "640", "960", "736-min"],
                        help="detection sizes: PIXELS on the longer side, PIXELS-min on the shorter")
    parser.add_argument("--pictures", type=int, default=20, help="photos of each kind per speed cell")
    parser.add_argument("--screenshots", type=int, default=5, help="screenshots per speed cell")
    parser.add_argument("--heights", type=int, nargs="+", default=[10, 12, 16, 20, 24, 32, 48])
    parser.add_argument("--per-height", type=int, default=40, help="photos (two signs each) per cap height")
    parser.add_argument("--recall-sides", nargs="+", default=["480", "640"])
    parser.add_argument("--blank", type=int, default=100, help="photos without words for the stray boxes")
    parser.add_argument("--build-images", type=int, default=200)
    parser.add_argument("--builds", nargs="+", choices=["on", "off"], default=["off", "on", "off"],
                        help="the builds in turn, ocr on or off (a second 'off' shows the run's noise)")
    return parser


def bench(args: argparse.Namespace) -> None:
    engine = choose_engine("auto")
    args.engines = args.engines or [engine]
    print(f"{cpu_features()}\n{versions()}; chosen configuration: {engine}, {DETECTION_SIDE} px", flush=True)
    pictures = samples(args.pictures, args.screenshots)
    with tempfile.TemporaryDirectory(prefix="bench-ocr-") as name:
        tmp = Path(name)
        speed = timed("speed", lambda: speed_rows(args, pictures))
        pool = timed("pool", lambda: pool_rows(engine, write_samples(pictures, tmp / "samples")))
        recall = timed("recall", lambda: recall_rows(args, engine))
        builds, with_words = timed("builds", lambda: build_rows(args, tmp))
    header = ("engine", "detection side", *(f"{kind} img/s" for kind in KINDS), "meets targets")
    print(f"\nSpeed: one reader, 2 threads, pictures in memory ({args.pictures} photos of each kind, 800x600; "
          f"{args.screenshots} screenshots, 1280x800). Targets: >= {PHOTO_TARGET:g} photos/s, "
          f">= {SCREENSHOT_TARGET:g} screenshots/s.")
    table(header, speed)
    print("\nThe build's pool: the same pictures read from files (JPEG, screenshots PNG), models loaded first.")
    table(("configuration", "processes x threads", *(f"{kind} img/s" for kind in KINDS), "meets targets"), pool)
    print(f"\nRecall: two signs of one or two words per photo; a word is found when it appears, case-folded, in the "
          f"joined text of the kept boxes. Target >= {RECALL_TARGET} from {RECALL_FROM} px.")
    table(("configuration", "cap height px", "photos", "words", "recall", "meets target"), recall)
    print(f"\nBuild: demo model, {args.build_images} JPEGs of 800x600 ({with_words} with words), a new workspace "
          "each. Searchable at: seconds from the call until the last partition, the IVF layer and the catalog's "
          "good copy are committed (the builder's remember_choice, just before WordsStage.finish). Total includes "
          "the duplicate calibration after the build; the model load is not counted.")
    table(("build", "images", "total s", "searchable at s", "OCR after searchable s", "images read",
           "images with words"), builds)


def main(argv: list[str] | None = None) -> None:
    run("ocr_speed", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
