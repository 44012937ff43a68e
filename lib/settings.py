"""The settings object: documented defaults, overridden by a config file, the environment and flags."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from lib.errors import SettingsError

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "CLIPSEARCH_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _setting(default: Any, help: str, **kwargs: Any) -> Any:
    return field(default=default, metadata={"help": help, **kwargs})


@dataclass(frozen=True)
class Settings:
    """Everything the builders, the trainer and the server need to know, with its default."""

    workspace: Path = _setting(REPO_ROOT, "root of the workspace: data/, indexes/, indexes_text/, cache/",
                               file=True)
    dataset_name: str = _setting("demo", "name of the image dataset, part of every index file name")
    dataset_path: Path = _setting(Path("data/demo"), "folder of images (a relative path is under the workspace in "
                                  "a config file or the environment, from the current folder on a command line)",
                                  file=True)
    follow_links: bool = _setting(False, "index symbolic links that lead outside the dataset's folder, and serve "
                                  "what they led to when built (by default they are skipped and reported)")
    layout: str = _setting("auto", "dataset layout", choices=("auto", "tiny-imagenet", "folders", "flat"))
    partition_size: int = _setting(1000, "images per partition when a flat folder is split into chunks")
    vocab_name: str = _setting("demo", "name of the vocabulary, part of the text index file name")
    vocab_source: str = _setting("data/demo/words.txt", "vocabulary file or http(s) URL (a relative path as for "
                                 "dataset_path)", file=True)
    model: str = _setting("demo", "CLIP model: 'demo', a Hugging Face id, a short OpenAI name or a folder")
    index_type: str = _setting("auto", "how image indexes search: auto (exact below ivf_min_vectors, above that IVF "
                               "over all partitions with one shared quantizer, codes chosen to fit memory_budget), "
                               "flat (always exact), hnsw or ivfpq (one such index per partition)",
                               choices=("auto", "flat", "hnsw", "ivfpq"))
    memory_budget: str = _setting("auto", "memory the IVF codes (and re-rank vectors) of one dataset may take, e.g. "
                                  "16G or 800M; decides flat, SQ8 or PQ codes; auto = 0.7 x this machine's memory")
    ivf_min_vectors: int = _setting(50_000, "index_type auto searches datasets smaller than this exactly (about 2 ms "
                                    "a query at 512-d on one core); at or above it builds IVF")
    target_recall: float = _setting(0.95, "recall@10 against exact search that IVF's nprobe is tuned to reach")
    embeddings_partition_size: int = _setting(100_000, "rows per partition when --from-embeddings splits a folder "
                                              "into chunks (without --class-column)")
    precision: str = _setting("auto", "encoder arithmetic: auto is the fastest of fp32, bf16 and int8 that keeps "
                              "fidelity on this CPU, measured once per model (bf16 where a GPU has it)",
                              choices=("auto", "fp32", "bf16", "int8"))
    backend: str = _setting("auto", "what runs the encoder: auto is OpenVINO on CPU, PyTorch on CUDA",
                            choices=("auto", "torch", "openvino"))
    inference_threads: int = _setting(0, "threads the encoder computes with; 0: every core (the API divides "
                                         "them between its workers)")
    batch_size: int = _setting(64, "images or texts encoded per forward pass")
    num_workers: int = _setting(2, "decoding and preprocessing worker processes")
    engine: str = _setting("local", "where images are encoded: in this process ('local') or on a Ray cluster ('ray')",
                           choices=("local", "ray"))
    ray_address: str = _setting("", "Ray cluster to join with --engine ray (e.g. 10.0.0.1:6379); empty: start "
                                    "a local Ray instance")
    host: str = _setting("127.0.0.1", "address the API listens on")
    port: int = _setting(5020, "port the API listens on")
    workers: int = _setting(2, "gunicorn worker processes")
    threads: int = _setting(4, "threads per gunicorn worker")
    text_cache_size: int = _setting(1024, "text queries whose embeddings each worker keeps (LRU; 0: none)")
    max_k: int = _setting(100, "most results one request may ask for; larger k is capped")
    max_upload_mb: int = _setting(20, "largest accepted request body (multipart uploads), in MiB")
    max_json_kb: int = _setting(4096, "largest accepted JSON request body, in KiB")
    max_json_depth: int = _setting(16, "deepest nesting of arrays and objects accepted in a JSON body")
    max_query_chars: int = _setting(1000, "longest accepted search query, in characters")
    max_caption_chars: int = _setting(1000, "longest accepted caption, in characters")
    max_captions: int = _setting(256, "most captions in one /similarity request")
    max_images: int = _setting(64, "most images (uploads and ids together) in one request")
    max_upload_pixels: int = _setting(40_000_000, "largest uploaded picture, in pixels (width x height)")
    max_request_pixels: int = _setting(256_000_000, "most pixels in all the pictures uploaded with one request (it "
                                                    "bounds the decoding work of one request)")
    api_key: str = _setting("", "key clients send as 'Authorization: Bearer KEY'; required to listen beyond loopback")
    cors_origins: str = _setting("", "comma-separated origins allowed to call the API from a browser when a key "
                                     "is set (without a key, any origin is)")
    allow_image_urls: bool = _setting(False, "let clip-retrieval's /knn-service fetch an image_url (public addresses "
                                             "only, no redirects, max_upload_mb and 10 s at most); off: a server "
                                             "that fetches URLs for anyone is an SSRF hole")
    proxy: str = _setting("auto", "buffering front end started by scripts/api.sh: nginx when installed (auto), "
                                  "always (nginx) or never (none)", choices=("auto", "nginx", "none"))
    client_timeout: int = _setting(10, "seconds the front end waits for the next bytes of a request before "
                                       "dropping it")
    trim_after_kb: int = _setting(64, "after a request with a body of at least this many KiB, give freed memory back "
                                      "to the system (malloc_trim); 0 never does")
    max_requests: int = _setting(2000, "a worker is replaced after about this many requests (+-10 %), a backstop "
                                       "against memory growth; 0 never replaces it")
    ocr: str = _setting("auto", "read the words in pictures (OCR) after the vectors are committed: on, off, or auto "
                        "(what the dataset's last build did; off for a new dataset)", choices=("auto", "on", "off"))
    regions: str = _setting("auto", "index the sub-pictures of collages and screenshots as entries of their own: on, "
                            "off, or auto (what the dataset's last build did; off for a new dataset)",
                            choices=("auto", "on", "off"))
    ocr_engine: str = _setting("auto", "what runs RapidOCR's models: auto is OpenVINO where installed (2-2.7x faster "
                               "here), else onnxruntime", choices=("auto", "openvino", "onnxruntime"))
    ocr_workers: int = _setting(1, "OCR reader processes of a local build, at the lowest priority, sharing this "
                                   "machine's cores as their threads (one process with 2 threads reads faster "
                                   "than two of one)")
    ocr_time_limit: float = _setting(30.0, "CPU seconds OCR may spend on one picture before it is kept without text")
    video_time_limit: float = _setting(300.0, "seconds decoding one video may take before it is skipped as "
                                              "unreadable (a damaged file can decode forever)")
    store: str = _setting("files", "where the vectors are searched: files (the index folder's FAISS files) or a "
                          "PostgreSQL URL with pgvector (postgresql://user:password@host/db), which builds then "
                          "copy their vectors into and the server searches", pattern=r"files|postgres(ql)?://.*")
    hnsw_m: int = _setting(16, "links per vector of the store database's HNSW index (pgvector's m); more: better "
                           "recall at a given ef_search, a slower build and a larger index")
    hnsw_ef_construction: int = _setting(64, "candidates kept while the store database's HNSW index is built "
                                         "(pgvector's ef_construction); more: a better graph, a slower build")
    calibration_images: int = _setting(48, "images whose edited copies calibrate a dataset's duplicate thresholds "
                                       "at the end of a build (0: do not calibrate when building)")

    def resolve(self, path: Path | str) -> Path:
        """A path from the settings, made absolute against the workspace."""
        path = Path(path).expanduser()
        return path if path.is_absolute() else (self.workspace / path).absolute()

    @property
    def indexes_dir(self) -> Path:
        return self.workspace / "indexes"

    @property
    def indexes_text_dir(self) -> Path:
        return self.workspace / "indexes_text"

    @property
    def cache_dir(self) -> Path:
        return self.workspace / "cache"


def _convert(name: str, value: Any) -> Any:
    """Turn a string (or a value from a file) into the type of the named setting."""
    spec = {f.name: f for f in fields(Settings)}[name]
    kind: type = type(spec.default)  # every setting has a plain default (_setting)
    if kind is bool and not isinstance(value, bool):
        if str(value).strip().lower() not in TRUE + FALSE:
            raise SettingsError(f"setting {name!r}: {value!r} is not true or false (or 1/0, yes/no, on/off)")
        return str(value).strip().lower() in TRUE
    try:
        converted = Path(value) if isinstance(spec.default, Path) else kind(value)
    except (TypeError, ValueError):
        raise SettingsError(f"setting {name!r}: {value!r} is not a valid {kind.__name__}") from None
    choices = spec.metadata.get("choices")
    if choices and converted not in choices:
        raise SettingsError(f"setting {name!r}: {value!r} is not one of {', '.join(choices)}")
    pattern = spec.metadata.get("pattern")
    if pattern and not re.fullmatch(pattern, str(converted)):
        raise SettingsError(f"setting {name!r}: {value!r} is not of the form {pattern}")
    return converted


def _apply(settings: Settings, values: Mapping[str, Any], source: str) -> Settings:
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"{source}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    return dataclasses.replace(settings, **{k: _convert(k, v) for k, v in values.items()})


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML or JSON config file into a flat mapping of setting names to values."""
    try:
        text = path.read_text()
    except OSError as err:
        raise SettingsError(f"cannot read config file {path}: {err.strerror}") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise SettingsError(f"config file {path} is not valid {kind}: {err}") from None


def env_values(environ: Mapping[str, str]) -> dict[str, str]:
    """The settings given as CLIPSEARCH_<NAME> environment variables."""
    names = {f.name for f in fields(Settings)}
    found = {key[len(ENV_PREFIX):].lower(): value for key, value in environ.items() if key.startswith(ENV_PREFIX)}
    return {name: value for name, value in found.items() if name in names}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings: defaults, then the config file, then the environment, then explicit overrides."""
    environ = os.environ if environ is None else environ
    settings = Settings()
    config_file = config_file or (Path(environ[CONFIG_ENV]) if environ.get(CONFIG_ENV) else None)
    if config_file is not None:
        settings = _apply(settings, read_config_file(Path(config_file)), str(config_file))
    settings = _apply(settings, env_values(environ), "environment")
    return _apply(settings, {k: v for k, v in (overrides or {}).items() if v is not None}, "flags")


def add_settings_arguments(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """Add a --flag for each named setting (default None, so that unset flags do not override)."""
    specs = {f.name: f for f in fields(Settings)}
    parser.add_argument("--config", type=Path, help=f"TOML or JSON settings file (or ${CONFIG_ENV})")
    for name in names:
        spec = specs[name]
        flag, text = "--" + name.replace("_", "-"), spec.metadata["help"]
        if isinstance(spec.default, bool):  # a switch: given is true (the environment or a file may say false)
            parser.add_argument(flag, dest=name, action="store_const", const=True, default=None, help=text)
            continue
        parser.add_argument(flag, dest=name, default=None, choices=spec.metadata.get("choices"),
                            help=f"{text} (default: {spec.default})")


def from_here(name: str, value: Any) -> Any:
    """A file setting given on the command line, absolute from the current folder, as every command takes a
    relative path (a URL, and what is not a file setting, stay as they are)."""
    spec = {f.name: f for f in fields(Settings)}.get(name)
    if value is None or spec is None or not spec.metadata.get("file") or "://" in str(value):
        return value
    return str(Path(value).expanduser().absolute())


def settings_from_args(args: argparse.Namespace, extra: Mapping[str, Any] | None = None) -> Settings:
    """Settings for a CLI: its --config file, the environment, then the flags it was given (and `extra`, its
    positional arguments), a relative path among them taken from the current folder."""
    names = {f.name for f in fields(Settings)}
    given = {**{k: v for k, v in vars(args).items() if k in names}, **(extra or {})}
    return load_settings(getattr(args, "config", None), overrides={k: from_here(k, v) for k, v in given.items()})
