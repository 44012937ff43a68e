"""The answer models: what each route returns, validated on the way out (so the spec cannot drift from the code)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refusal: a short error and why (for invalid fields, 'field: why; ...')."""

    error: str
    detail: str


class ModelInfo(BaseModel):
    spec: str
    weights_sha256: str
    dim: int


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: index files are left out (listed in /indexes); "
                                                          "the rest is served and the answer stays HTTP 200")
    model: ModelInfo
    datasets: int
    vocabularies: int
    left_out_files: int = Field(description="index files left out because they are damaged, unreadable or missing")


class PartitionInfo(BaseModel):
    name: str
    class_name: str
    count: int


class SearchMode(BaseModel):
    """How a dataset is searched: exact, or IVF as tuned at build time (only `method` when exact), or HNSW in
    the store database."""

    method: Literal["exact", "ivf", "hnsw"]
    store: Literal["files", "postgresql"] = "files"
    ef_search: int | None = Field(None, description="hnsw.ef_search tuned at build time (store postgresql)")
    storage: str | None = Field(None, description="codes in the IVF lists: flat, sq8 or pq<m>")
    nlist: int | None = None
    nprobe: int | None = Field(None, description="lists probed per query; 0 means searched exactly")
    nprobe_filtered: int | None = Field(None, description="the same when partitions are chosen")
    rerank: int | None = Field(None, description="candidates re-scored exactly = rerank x k (1: none)")
    recall_at_10: float | None = Field(None, description="against exact search, measured when tuned")
    recall_at_10_filtered: float | None = None
    tuned_on: int | None = None
    trained_on: int | None = None
    exact_partitions: int | None = Field(None, description="partitions without IVF lists yet")
    retrain: str | None = Field(None, description="why the quantizer should be trained again")


class WordsInfo(BaseModel):
    """What OCR has read in a dataset's pictures so far (a build with --ocr reads them)."""

    read: int = Field(description="images OCR has been run on")
    with_words: int = Field(description="of those, images in which it found words")
    failed: int = Field(description="images indexed without text: OCR failed or ran past its time limit")


class DatasetInfo(BaseModel):
    name: str
    layout: str
    index_type: str
    count: int
    search: SearchMode
    partitions: list[PartitionInfo]
    words: WordsInfo


class VocabularyInfo(BaseModel):
    name: str
    entries: int
    templates: list[str]


class LeftOut(BaseModel):
    what: str
    why: str
    file: str | None = Field(None, description="the damaged, unreadable or missing file, when a file is the cause")


class IndexesAnswer(BaseModel):
    model: ModelInfo
    datasets: list[DatasetInfo]
    vocabularies: list[VocabularyInfo]
    left_out: list[LeftOut]


class LinkedImage(BaseModel):
    """An indexed image, with the links to it and to its thumbnail."""

    id: int
    path: str = Field(description="relative to the dataset's folder; a backslash, a control character or a byte that "
                                  "is not UTF-8 is escaped (\\\\, \\n, \\t, \\xNN)")
    width: int
    height: int
    image_url: str = Field(description="the file; for a scene of a video, its frame as a JPEG")
    thumbnail_url: str = Field(description="add size=N (16-1024) for another size")
    media: Literal["image", "video"] = Field(description="'video': a scene of a video file, which the fields "
                                                         "video_start, video_end and video_url describe")
    video_start: float | None = Field(None, description="a scene's first moment, seconds from the video's start")
    video_end: float | None = Field(None, description="a scene's end, seconds from the video's start")
    video_url: str | None = Field(None, description="the video file, with HTTP range requests; add the media "
                                                    "fragment #t=<video_start> to play from the scene")


class TextBoxAnswer(BaseModel):
    text: str
    confidence: float = Field(description="the recogniser's confidence, 0-1")
    box: list[list[int]] = Field(description="the four corners [x, y] in the picture's pixels (upright, as served), "
                                             "clockwise from the top left")


class Hit(LinkedImage):
    score: float = Field(description="cosine to the query; in mode 'text' the text match's bm25 score (the "
                                     "reciprocal rank fusion score when words read in pictures matched too), in "
                                     "'hybrid' the reciprocal rank fusion score")
    dataset: str
    partition: str
    class_name: str
    captured_at: str | None = Field(None, description="ISO 8601 (UTC): when the picture was taken (EXIF), else "
                                                      "the file's modification time")
    captured_from: Literal["exif", "mtime"] | None = None
    text_matches: list[TextBoxAnswer] | None = Field(None, description="the boxes of words read in the picture that "
                                                                       "the query (or the ocr filter) matched")
    region: list[int] | None = Field(None, description="a region of a picture indexed with --regions: its box "
                                                       "[x0, y0, x1, y1] in the picture's pixels (the links are the "
                                                       "picture's)")


class ImageTextAnswer(BaseModel):
    id: int
    read: bool = Field(description="whether OCR has been run on the image (a build with --ocr reads it)")
    problem: str = Field(description="why it could not be read ('' when it was, or is not read yet)")
    text: str = Field(description="the lines read, top to bottom, one per box")
    width: int
    height: int
    boxes: list[TextBoxAnswer]


class ParsedTerm(BaseModel):
    text: str | None = None
    image_id: int | None = None
    upload: int | None = None
    weight: float


class SearchAnswer(BaseModel):
    query: str | None = Field(description="the query as given (null for terms)")
    parsed: list[ParsedTerm] = Field(description="how the query was read: its terms and weights")
    k: int
    offset: int
    next_offset: int | None = Field(description="the offset of the next page; null on the last one")
    cutoff_score: float | None = Field(description="the score results had to reach (min_score or the auto cut-off)")
    relevant: int | None = Field(description="how many results there are in all, where known")
    sort: str
    mode: str
    results: list[Hit]
    notes: list[str]


class RegionAnswer(BaseModel):
    box: list[int] = Field(description="[x0, y0, x1, y1] in the query image's own (upright) pixels")
    results: list[Hit] = Field(description="the images most like this region, as `results` are for the whole image")


class SimilarAnswer(BaseModel):
    k: int
    image_id: int | None
    results: list[Hit]
    regions: list[RegionAnswer] | None = Field(None, description="with `regions`: the image's sub-pictures in "
                                                                 "reading order, each searched on its own (a picture "
                                                                 "without any is one region, the whole of it)")
    notes: list[str]


class LabelScore(BaseModel):
    id: str
    label: str
    score: float = Field(description="cosine similarity of the image and the label's prompt")
    probability: float = Field(description="softmax over the whole vocabulary")


class ClassifyAnswer(BaseModel):
    vocab: str
    k: int
    labels: list[LabelScore]
    notes: list[str]


class SimilarityAnswer(BaseModel):
    captions: list[str]
    image_ids: list[int]
    matrix: list[list[float]] = Field(description="one row per image (uploads first, then ids), one column per caption")
    pairs: list[float] | None = Field(description="image i with caption i, when there are as many of each")


class ConfigAnswer(BaseModel):
    api: str = Field(description="where the pages find the API")


class GroupMember(LinkedImage):
    bytes: int
    score: float = Field(description="cosine to the group's keeper")
    keep: bool = Field(description="the suggested keeper (largest, then earliest capture, then shortest path)")


class DuplicateGroupAnswer(BaseModel):
    group: int
    tier: Literal["exact", "near", "similar"]
    bytes_freed: int = Field(description="what removing every member but the keeper would free")
    keeper: int
    members: list[GroupMember]


class TierTotals(BaseModel):
    groups: int
    images: int
    bytes_freed: int


class Thresholds(BaseModel):
    near: float | None
    similar: float | None
    calibrated_at: str | None
    model: ModelInfo | None
    details: dict
    defaults: bool = Field(description="the library is too small to calibrate on: these are the documented "
                                       "defaults (details.reason says why)")
    near_bits: int = Field(description="the most bits of 64 in which a near pair's perceptual signatures differ")


class DuplicatesAnswer(BaseModel):
    dataset: str
    tier: Literal["exact", "near", "similar"] | None
    images: int
    thresholds: Thresholds
    totals: dict[str, TierTotals]
    total: int = Field(description="groups of the asked tier (or of all)")
    offset: int
    limit: int
    next_offset: int | None
    groups: list[DuplicateGroupAnswer]


class DatasetEvaluations(BaseModel):
    dataset: str
    evaluations: list[dict] = Field(description="each model's figures (python -m lib.evaluate --dataset); `in_use` "
                                                "marks the server's model")


class EvaluationsAnswer(BaseModel):
    model: ModelInfo
    datasets: list[DatasetEvaluations]
