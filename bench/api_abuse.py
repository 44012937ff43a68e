#!/usr/bin/env python3
"""The largest inputs the API accepts: what each costs, and whether the workers' memory comes back after them.

scripts/api.sh (nginx in front of 2 gunicorn workers) over 10,000 synthetic vectors. First the cost of each
largest accepted request (one at a time, median of 3) beside the same route with a small input, and the
time to refuse inputs over the limits (the issue's 10 MB query among them). Then a
bounded abuse run: CLIENTS threads send only largest inputs for SECONDS; the workers' RSS is sampled as
it runs and read again after 5 s idle. Once per allocator set-up: as shipped (MALLOC_ARENA_MAX=2 and
malloc_trim after large bodies), without malloc_trim, and with glibc's defaults.
Target (issue 14): every worker's RSS after the run within 1.5x its baseline.
Hostile requests (issue 21), with the first set-up: a small built dataset whose files have names with bytes that
are not UTF-8, newlines and tabs (served, 200) and were swapped after the build for links to /etc/passwd or to an
image outside the dataset, or for a file of another size (404); nginx's own refusals (TRACE, a long URI, a large
body) and paths that climb out. Target: every answer as expected, none a 5xx.

    .venv/bin/python -m bench.api_abuse [--model demo] [--seconds 20] [--clients 4] [--setups shipped no-trim glibc]
                                        [--limit max_upload_mb=4 ...]

--smoke: the shipped set-up only, limits a fraction of the defaults (so the largest inputs are small), 1 s of abuse.
"""
from __future__ import annotations

import argparse
import http.client
import io
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image

from bench import SmokeParser, link_model_cache
from bench.api_load import gunicorn_processes, start_server, stop_server, synthetic_index
from lib.cli import run
from lib.errors import SettingsError
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.settings import Settings, load_settings
from lib.store.catalog import Catalog

SETUPS = {  # environment of scripts/api.sh
    "shipped": {},
    "no-trim": {"CLIPSEARCH_TRIM_AFTER_KB": "0"},
    "glibc": {"CLIPSEARCH_TRIM_AFTER_KB": "0", "MALLOC_ARENA_MAX": str(8 * (os.cpu_count() or 1))},
}
SMOKE = dict(setups=["shipped"], seconds=1.0, clients=1, idle=0.5,
             limit=["max_upload_mb=1", "max_upload_pixels=1000000", "max_request_pixels=4000000", "max_images=4",
                    "max_captions=16", "max_json_kb=256"])


def encoded(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def largest_jpeg(limit: int) -> bytes:
    """Noise JPEG of 80-95 % of `limit` bytes (noise does not compress), as large a photo as an upload may be."""
    side = 1000
    while True:
        noise = np.random.default_rng(side).integers(0, 256, (side, side * 4 // 3, 3), dtype=np.uint8)
        data = encoded(Image.fromarray(noise), "JPEG", quality=95)
        if len(data) <= 0.95 * limit and (len(data) > 0.8 * limit or side > 8000):
            return data
        side = int(side * (0.9 * limit / len(data)) ** 0.5)


def pixels_png(pixels: int) -> bytes:
    """A plain picture of about `pixels` pixels: a small file that decodes large."""
    side = int(pixels ** 0.5)
    return encoded(Image.new("RGB", (side, pixels // side), (20, 90, 200)), "PNG")


def requests_of(limits: Settings) -> dict[str, tuple[str, dict, dict]]:
    """For each case: (route, largest accepted request, the same with a small input), as requests kwargs."""
    small_png = encoded(Image.new("RGB", (96, 96), (200, 30, 30)), "PNG")
    many_pixels, share = (pixels_png(n) for n in (limits.max_upload_pixels,
                                                  limits.max_request_pixels // limits.max_images))
    captions = ["a long caption " * (limits.max_caption_chars // 15)] * limits.max_captions
    ids = list(range(1, limits.max_images + 1))
    return {
        "search, longest query": ("/search", {"json": {"query": "q" * limits.max_query_chars, "k": limits.max_k,
                                                       "dataset": "synthetic"}},
                                  {"json": {"query": "red circle", "k": 10, "dataset": "synthetic"}}),
        "similarity, most captions and ids": (
            "/similarity", {"json": {"captions": captions, "image_ids": ids}},
            {"json": {"captions": captions[:2], "image_ids": ids[:2]}}),
        "classify, largest upload": ("/classify", {"files": {"image": ("big.jpg", largest_jpeg(
            limits.max_upload_mb * 2**20))}}, {"files": {"image": ("small.png", small_png)}}),
        "classify, most pixels": ("/classify", {"files": {"image": ("pixels.png", many_pixels)}},
                                  {"files": {"image": ("small.png", small_png)}}),
        "similarity, most uploads and captions": (
            "/similarity", {"files": [("images", (f"{i}.png", share)) for i in range(limits.max_images)],
                            "data": {"captions": captions}},
            {"files": [("images", ("0.png", small_png))], "data": {"captions": captions[:2]}}),
    }


def refusals_of(limits: Settings) -> dict[str, tuple[str, dict]]:
    """Inputs over the limits, among them the issue's 10 MB query (19 s and GBs of memory before the limits)."""
    over = limits.max_json_kb * 1024 - 64
    return {
        "search, 10 MB query": ("/search", {"json": {"query": "q" * 10_000_000}}),
        "search, query just under max_json_kb": ("/search", {"json": {"query": "q" * over}}),
        "search, one character over max_query_chars": ("/search", {"json": {"query": "q" * (limits.max_query_chars
                                                                                          + 1)}}),
        "similarity, captions over max_captions": ("/similarity", {"json": {"captions": ["a"] * (limits.max_captions
                                                                                                  + 1)}}),
        "search, JSON nested 100,000 deep": ("/search", {"data": "[" * 100_000, "headers": {
            "Content-Type": "application/json"}}),
    }


def refusal_costs(base: str, cases: dict) -> list[tuple]:
    """Each refusal's body size, median time of 3 and statuses."""
    rows = []
    for name, (route, kwargs) in cases.items():
        answers = [timed(base, route, kwargs) for _ in range(3)]
        size = len(requests.Request("POST", base + route, **kwargs).prepare().body or b"")
        rows.append((name, size, statistics.median(t for t, _ in answers), {status for _, status in answers}))
    return rows


ODD_NAMES = [os.fsdecode(b"caf\xe9-\xff.png"), "new\nline.png", "tab\there.png", 'quote"back\\slash.png']
SWAPS = {"to-passwd.png": "link to /etc/passwd", "to-outside.png": "link to an image outside", "resized.png":
         "another size"}


def hostile_dataset(workspace: Path, encoder, model: str) -> dict[str, int]:
    """Dataset 'hostile' built beside the synthetic one, then its SWAPS files swapped; the id of each file."""
    root, outside = workspace / "hostile", workspace / "outside"
    for path in [root / n for n in ["plain.png", *ODD_NAMES, *SWAPS]] + [outside / "out.png"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (48, 48), (len(path.name) * 9 % 256, 90, 200)).save(path, "PNG")
    (root / "inside-link.png").symlink_to("plain.png")
    (root / "outside-link.png").symlink_to(outside / "out.png")
    settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name="hostile", model=model,
                                                        dataset_path=str(root), num_workers=0, calibration_images=0))
    build_image_index(settings, encoder, progress=False)
    for name in SWAPS:
        (root / name).unlink()
    (root / "to-passwd.png").symlink_to("/etc/passwd")
    (root / "to-outside.png").symlink_to(outside / "out.png")
    Image.new("RGB", (49, 48)).save(root / "resized.png", "PNG")
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    return {r.path: r.id for r in catalog.images("hostile")}


def hostile_cases(ids: dict[str, int]) -> dict[str, tuple[tuple[int, ...], list[tuple[str, str, dict]]]]:
    """For each case: the statuses expected and its requests (method, path, requests kwargs)."""
    served = [n for n in ids if n not in SWAPS]
    return {
        "odd names and a link inside: /images, /thumbnails": ((200,), [
            ("GET", f"/{route}/{ids[n]}", {}) for n in served for route in ("images", "thumbnails")]),
        "files swapped after the build: /images, /thumbnails": ((404,), [
            ("GET", f"/{route}/{ids[n]}", {}) for n in SWAPS for route in ("images", "thumbnails")]),
        "TRACE": ((405,), [("TRACE", path, {}) for path in ("/", "/health", f"/images/{ids['plain.png']}")]),
        "URI over 8 KiB": ((414,), [("GET", "/" + "a" * 9000, {}), ("GET", "/health?q=" + "b" * 9000, {})]),
        "body over max_upload_mb (its headers)": ((413,), [("POST", "/search", {"length": 30_000_000})]),
        "paths that climb out": ((400, 404), [("GET", path, {}) for path in (
            "/images/..%2f..%2fetc%2fpasswd", "/images/%2e%2e/%2e%2e/etc/passwd", "/../../etc/passwd",
            "/images/-1", "/images/" + "9" * 30, "/thumbnails/0")]),
    }


def sent_status(base: str, method: str, path: str, kwargs: dict) -> int:
    """The status of one request; with `length`, only headers that announce a body of that many bytes."""
    if "length" not in kwargs:
        return requests.request(method, base + path, timeout=60, **kwargs).status_code
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        connection.putrequest(method, path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(kwargs["length"]))
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def hostile_answers(base: str, cases: dict) -> list[tuple[str, int, int, int, set[int]]]:
    """Per case: requests sent, answered with the expected status, 5xx, and the statuses seen."""
    rows = []
    for name, (expected, sent) in cases.items():
        statuses = [sent_status(base, method, path, kwargs) for method, path, kwargs in sent]
        rows.append((name, len(statuses), sum(s in expected for s in statuses), sum(s >= 500 for s in statuses),
                     set(statuses)))
    return rows


def worker_rss_mb(root: int) -> list[float]:
    found = gunicorn_processes(root)
    workers = [pid for pid in found if int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) in found]
    return [int(line.split()[1]) / 1024 for pid in sorted(workers)
            for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("VmRSS:")]


def timed(base: str, route: str, kwargs: dict) -> tuple[float, int]:
    started = time.perf_counter()
    response = requests.post(base + route, timeout=300, **kwargs)
    return (time.perf_counter() - started) * 1000, response.status_code


def costs(base: str, cases: dict) -> list[tuple]:
    rows = []
    for name, (route, largest, small) in cases.items():
        big = [timed(base, route, largest) for _ in range(3)]
        normal = [timed(base, route, small) for _ in range(3)]
        size = len(requests.Request("POST", base + route, **largest).prepare().body or b"")
        rows.append((name, size, statistics.median(t for t, _ in big), statistics.median(t for t, _ in normal),
                     {status for _, status in big + normal}))
    return rows


def abuse(base: str, root: int, cases: dict, clients: int, seconds: float) -> tuple[float, int]:
    """Largest inputs only, from `clients` threads for `seconds`; the peak worker RSS and the request count."""
    stop, sent, peak = threading.Event(), [0], [0.0]

    def client(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            route, largest, _ = rng.choice(list(cases.values()))
            timed(base, route, largest)
            sent[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        peak[0] = max([peak[0], *worker_rss_mb(root)])
        time.sleep(0.25)
    stop.set()
    for thread in threads:
        thread.join()
    return peak[0], sent[0]


def one_setup(workspace: Path, args: argparse.Namespace, setup: str, limits: Settings, cases: dict, hostile: dict
              ) -> tuple[list, list, tuple, list]:
    os.environ.update(SETUPS[setup])
    try:
        process, base = start_server(workspace, args.model, 2, 4)
    finally:
        for name in SETUPS[setup]:
            os.environ.pop(name)
    try:
        for route, _, small in cases.values():
            for _ in range(5):
                timed(base, route, small)
        time.sleep(min(3.0, args.idle))
        baseline = worker_rss_mb(process.pid)
        first = setup == args.setups[0]
        cost_rows = costs(base, cases) if first else []
        refused = refusal_costs(base, refusals_of(limits)) if first else []
        hostile_rows = hostile_answers(base, hostile) if first else []
        peak, sent = abuse(base, process.pid, cases, args.clients, args.seconds)
        time.sleep(args.idle)
        after = worker_rss_mb(process.pid)
    finally:
        stop_server(process)
    return cost_rows, refused, (setup, baseline, peak, after, sent), hostile_rows


def limits_of(items: list[str]) -> dict[str, str]:
    """--limit's NAME=VALUE items as settings."""
    malformed = [item for item in items if "=" not in item]
    if malformed:
        raise SettingsError(f"--limit {malformed[0]!r} is not NAME=VALUE (e.g. max_upload_mb=4)")
    return dict(item.split("=", 1) for item in items)


def unexpected_statuses(results: list[tuple]) -> list[str]:
    """The cases whose answers were not what the limits promise: 200 for the largest accepted, 4xx for the rest,
    and each hostile request its own expected status."""
    return [name for name, *_, statuses in results[0][0] if statuses != {200}] + \
        [name for name, *_, statuses in results[0][1] if not all(400 <= s < 500 for s in statuses)] + \
        [name for name, count, expected, *_ in results[0][3] if expected != count]


def make_parser() -> argparse.ArgumentParser:
    parser = SmokeParser(__doc__, SMOKE)
    parser.add_argument("--model", default="demo", help="model spec the server loads (random:ViT-B/32 for full size)")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the abuse run")
    parser.add_argument("--clients", type=int, default=4, help="threads sending largest inputs in the abuse run")
    parser.add_argument("--setups", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    parser.add_argument("--idle", type=float, default=5.0, help="seconds idle before the workers' RSS is read again")
    parser.add_argument("--limit", nargs="*", default=[], metavar="NAME=VALUE",
                        help="server limits other than the defaults (e.g. max_upload_mb=4); the largest inputs follow")
    return parser


def bench(args: argparse.Namespace) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    limits = limits_of(args.limit)
    settings = load_settings(environ={}, overrides=limits)  # the servers read them from the environment
    os.environ.update({f"CLIPSEARCH_{name.upper()}": value for name, value in limits.items()})
    cases = requests_of(settings)
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        encoder = load_encoder(args.model, cache_dir=link_model_cache(Path(tmp)) / "cache")
        synthetic_index(Path(tmp), encoder, 10_000, 10)
        hostile = hostile_cases(hostile_dataset(Path(tmp), encoder, args.model))
        results = [one_setup(Path(tmp), args, setup, settings, cases, hostile) for setup in args.setups]
    print(f"\nmodel {args.model}; 2 workers x 4 threads behind nginx; {' '.join(args.limit) or 'default'} limits; "
          f"costs with the {args.setups[0]} set-up, median of 3, one request at a time")
    print("| request | body bytes | largest ms | small ms | ratio | statuses |")
    print("|---|---|---|---|---|---|")
    for name, size, big, small, statuses in results[0][0]:
        print(f"| {name} | {size:,} | {big:.0f} | {small:.1f} | {big / small:.0f}x | {sorted(statuses)} |")
    print("\nrefused inputs, median of 3")
    print("| request | body bytes | ms | statuses |")
    print("|---|---|---|---|")
    for name, size, took, statuses in results[0][1]:
        print(f"| {name} | {size:,} | {took:.1f} | {sorted(statuses)} |")
    print(f"\nabuse run: {args.clients} clients x {args.seconds:.0f} s of largest inputs; RSS per worker in MiB, "
          f"read after {args.idle:g} s idle")
    print("| set-up | requests | baseline | peak | after | after / baseline |")
    print("|---|---|---|---|---|---|")
    for _, _, (setup, baseline, peak, after, sent), _ in results:
        ratio = max(a / b for a, b in zip(after, baseline, strict=True))
        print(f"| {setup} | {sent} | {' / '.join(f'{b:.0f}' for b in baseline)} | {peak:.0f} | "
              f"{' / '.join(f'{a:.0f}' for a in after)} | {ratio:.2f} |")
    print_hostile(results[0][3])
    wrong = unexpected_statuses(results)
    if args.smoke and wrong:
        raise SystemExit(f"smoke: unexpected statuses for {', '.join(wrong)}")


def print_hostile(rows: list) -> None:
    print("\nhostile requests, each once")
    print("| case | requests | as expected | 5xx | statuses |")
    print("|---|---|---|---|---|")
    for name, count, expected, errors, statuses in rows:
        print(f"| {name} | {count} | {expected} | {errors} | {sorted(statuses)} |")
    totals = [sum(row[i] for row in rows) for i in (1, 2, 3)]
    print(f"| all | {totals[0]} | {totals[1]} | {totals[2]} | |")


def main(argv: list[str] | None = None) -> None:
    run("api_abuse", make_parser(), bench, argv)


if __name__ == "__main__":
    main()
