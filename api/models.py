"""The request models of the API: pydantic validates requests with them and the spec is made from them.

A request model is written once, for JSON (`JsonBody`: strict types, so `true` or `"5"` is no number);
its multipart twin comes from `form_of`, which loosens the types (a form field is text) and adds upload
fields. To add a parameter, add one field to the JSON model: the form, the validation and the spec follow.
Choices are `Literal[...]` (strict validation takes no strings for an Enum).
"""
from __future__ import annotations

import io
import json
import re
import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError
from spectree.model_adapter.pydantic_adapter import BaseFile
from werkzeug.datastructures import FileStorage

from api.limits import MAX_IMAGE_ID, MAX_PARTITIONS, Limit, current_limits
from lib.errors import QueryError
from lib.serve.paged_search import parse_instant
from lib.serve.query_terms import MAX_TERMS, MAX_WEIGHT

MAX_OFFSET = 100_000  # lib/serve/ranking.MAX_DEPTH: no list is deeper
MAX_UPLOAD_TERMS = 4


def integral(value: Any) -> Any:
    """5.0 is an integer to JSON Schema (and fuzzers send it); 5.5, true and "5" stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def matching(pattern: str, message: str) -> AfterValidator:
    """A regular expression with a message people can read (pydantic would quote the expression itself)."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.search(value):
            raise PydanticCustomError("pattern_mismatch", message)
        return value
    return AfterValidator(check)


# A character that is space to neither Python (whose strip() also drops \x1c-\x1f and \x85) nor JSON Schema's
# ECMA regex (whose \s also holds \ufeff): one caption of "\x1e" passed the spec and was empty once stripped.
NAME_PATTERN, TEXT_PATTERN = r"^[A-Za-z0-9.+-]+$", r"[^\s\x1c-\x1f\x85\ufeff]"
Name = Annotated[str, Field(min_length=1, max_length=255, description="a dataset, partition or vocabulary name",
                            json_schema_extra={"pattern": NAME_PATTERN}),
                 matching(NAME_PATTERN, "a name holds only letters, digits, '.', '-' and '+'")]
Text = Annotated[str, Field(min_length=1, description="text with at least one non-space character",
                            json_schema_extra={"pattern": TEXT_PATTERN}),
                 matching(TEXT_PATTERN, "must hold at least one non-space character")]
Query = Annotated[Text, Limit("query_chars")]
Caption = Annotated[Text, Limit("caption_chars")]
K = Annotated[int, Field(ge=1, description="how many results; a k over the server's max_k is capped, and the "
                                       "answer's notes say so"), BeforeValidator(integral)]
ImageId = Annotated[int, Field(ge=0, le=MAX_IMAGE_ID, description="an indexed image"), BeforeValidator(integral)]
Partitions = Annotated[list[Name], Field(min_length=1, max_length=MAX_PARTITIONS,
                                         description="partitions to search (all when absent)")]
EXACT = ("scan every stored vector instead of probing the dataset's IVF lists (slower on large datasets; the "
         "answer as exact search gives it)")
ImageIds = Annotated[list[ImageId], Field(min_length=1), Limit("images")]
Cosine = Annotated[float, Field(ge=-1, le=1, allow_inf_nan=False, description="a cosine threshold")]


class UploadedImage(BaseFile):
    """An uploaded file (multipart); spectree's BaseFile takes anything, this insists on a file part.

    A part without a file name arrives as latin-1 text (api.validation.FilePartsParser) and is made a file again.
    """

    @classmethod
    def validate(cls, value: Any, info: Any = None, *_args: Any) -> FileStorage:
        if isinstance(value, FileStorage):
            return value
        try:
            data = value.encode("latin-1") if isinstance(value, str) else None
        except UnicodeEncodeError:
            data = None
        if data is None:
            raise ValueError("must be a file part of a multipart form")
        return FileStorage(io.BytesIO(data), filename="", name=getattr(info, "field_name", None) or "")


Uploads = Annotated[list[UploadedImage], Field(min_length=1), Limit("images")]


class JsonBody(BaseModel):
    """A JSON request: exact types, no unknown fields, no NaN or infinity."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


def _takes_list(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        return _takes_list(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return any(_takes_list(arg) for arg in get_args(annotation))
    return get_origin(annotation) is list


class FormInput(BaseModel):
    """What a multipart form needs on top of the JSON model: text to numbers, one field to a list, no nulls."""

    @model_validator(mode="before")
    @classmethod
    def _from_form(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        fields = cls.model_fields
        given = {key: value for key, value in data.items() if value != ""}  # an empty field counts as absent
        return {key: [value] if key in fields and _takes_list(fields[key].annotation) and not isinstance(value, list)
                else value for key, value in given.items()}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        schema = handler.resolve_ref_schema(handler(core_schema))
        for prop in schema.get("properties", {}).values():  # a form cannot send null: do not offer it
            options = [o for o in prop.get("anyOf", ()) if o.get("type") != "null"]
            if "anyOf" in prop and len(options) == 1:
                prop.pop("anyOf")
                prop.update(options[0])
        return schema


def form_of(model: type[BaseModel], *mixins: type[BaseModel], **fields: tuple[Any, Any]) -> type[BaseModel]:
    """The multipart twin of a JSON model, with `fields` (name=(type, default)) added or replaced."""
    namespace = {"__module__": __name__, "__doc__": model.__doc__, "model_config": {"strict": False},
                 "__annotations__": {name: kind for name, (kind, _) in fields.items()},
                 **{name: default for name, (_, default) in fields.items()}}
    return types.new_class(model.__name__.removesuffix("Body") + "Form", (*mixins, FormInput, model),
                           exec_body=lambda ns: ns.update(namespace))


def iso_instant(end_of_day: bool) -> BeforeValidator:
    """lib.serve.search.parse_instant as a validator: ns since the epoch, or the field's error."""
    def parse(value: Any) -> Any:
        try:
            if not isinstance(value, str):
                raise QueryError("not a string")
            return parse_instant(value, end_of_day)
        except QueryError:
            raise PydanticCustomError("iso_date", "must be an ISO 8601 date or date-time, such as 2024-05-31 or "
                                                  "2024-05-31T18:30:00") from None
    return BeforeValidator(parse)


Offset = Annotated[int, Field(0, ge=0, le=MAX_OFFSET, description="results to skip: the `next_offset` of the page "
                                                                    "before"), BeforeValidator(integral)]
Side = Annotated[int, Field(ge=1, le=1_000_000, description="pixels"), BeforeValidator(integral)]
ISO_PATTERN = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"
DateFrom = Annotated[int, Field(description="ISO 8601 date or date-time: captured at or after",
                                json_schema_extra={"type": "string", "pattern": ISO_PATTERN}),
                     iso_instant(end_of_day=False)]
DateTo = Annotated[int, Field(description="ISO 8601 date or date-time: captured at or before (a date: that whole "
                                          "day)", json_schema_extra={"type": "string", "pattern": ISO_PATTERN}),
                   iso_instant(end_of_day=True)]


class TermBody(JsonBody):
    """One term of a composed query: a text, an indexed image or an uploaded one (its number among the
    form's `image` files), with a weight (negative: away from it)."""

    text: Caption | None = None
    image_id: ImageId | None = None
    upload: Annotated[int, Field(ge=0, le=MAX_UPLOAD_TERMS), BeforeValidator(integral)] | None = None
    weight: float = Field(1.0, ge=-MAX_WEIGHT, le=MAX_WEIGHT, allow_inf_nan=False)

    @model_validator(mode="after")
    def _one_kind(self) -> TermBody:
        given = [name for name in ("text", "image_id", "upload") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError("a term is exactly one of text, image_id or upload")
        if self.weight == 0:
            raise ValueError("a term's weight may not be 0")
        return self


def _json_text(value: Any) -> Any:
    """A form sends `terms` as JSON text."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        value = value[0]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise PydanticCustomError("json_terms", "terms must be a JSON list of terms") from None
    return value


class SearchBody(JsonBody):
    """Search the images of one dataset by text (a query or composed terms), with pages, a cut-off and filters."""

    query: Query | None = Field(None, description="text, or the search box's grammar: `red circle - circle + "
                                                  "square`, `2:red`, `img:12` (README)")
    terms: Annotated[list[TermBody], Field(min_length=1, max_length=MAX_TERMS), BeforeValidator(_json_text)] | None = (
        Field(None, description="a composed query instead of `query`"))
    k: K = 10
    offset: Offset = 0
    dataset: Name | None = Field(None, description="the dataset to search; may be left out when there is one")
    partitions: Partitions | None = None
    exact: bool = Field(False, description=EXACT)
    min_score: Cosine | None = Field(None, description="keep only results whose cosine reaches this")
    cutoff: Literal["auto"] | None = Field(None, description="'auto': keep results up to where the query's own "
                                                             "scores fall apart (the answer's cutoff_score)")
    date_from: DateFrom | None = None
    date_to: DateTo | None = None
    folder: Annotated[str, Field(min_length=1, max_length=1024, description="a folder (path prefix relative to "
                                                                            "the dataset's root)")] | None = None
    min_width: Side | None = None
    min_height: Side | None = None
    ocr: Annotated[str, Field(min_length=1, max_length=200, description="keep only images whose words read by OCR "
                                                                        "hold every word of this (three letters or "
                                                                        "more, as substrings; case and accents "
                                                                        "ignored)")] | None = None
    sort: Literal["relevance", "newest", "oldest"] = Field("relevance", description="date order sorts the relevant "
                                                           "results only: the cut-off's, min_score's, else k x 10")
    mode: Literal["clip", "text", "hybrid"] = Field("clip", description="CLIP, text (names, captions and words "
                                                                        "read in the pictures), or both (reciprocal "
                                                                        "rank fusion)")
    group_videos: bool = Field(False, description="at most one result per video: its best scene (so that one long "
                                                  "video does not fill the page)")

    @model_validator(mode="after")
    def _consistent(self) -> SearchBody:
        if (self.query is None) == (self.terms is None) and not getattr(self, "image", None):
            raise ValueError("give either query or terms" if self.query is None else
                             "give query or terms, not both")
        if self.date_from is not None and self.date_to is not None and self.date_from > self.date_to:
            raise PydanticCustomError("date_order", "date_from is after date_to")
        if self.mode == "text" and (self.min_score is not None or self.cutoff is not None):
            raise PydanticCustomError("text_cutoff", "mode 'text' has no CLIP scores: min_score and cutoff need "
                                                     "mode 'clip' or 'hybrid'")
        return self


class ImageBody(JsonBody):
    """About one indexed image, named by id (a form may upload one in `image` instead)."""

    image_id: ImageId
    k: K = 10


class ClassifyBody(ImageBody):
    vocab: Name | None = Field(None, description="the vocabulary to classify against (the first one by default)")


class SimilarBody(ImageBody):
    dataset: Name | None = Field(None, description="the dataset to search (the query image's own by default)")
    partitions: Partitions | None = None
    duplicates: bool = Field(False, description="keep only results at or above `threshold`")
    threshold: float = Field(0.95, ge=-1.0, le=1.0, description="cosine similarity for `duplicates`")
    exact: bool = Field(False, description=EXACT)
    regions: bool = Field(False, description="also split the image into its sub-pictures (the photos of a collage, "
                                             "a screenshot or a slide) and search each one: the answer's `regions`")


class SimilarityBody(JsonBody):
    """Score every image against every caption."""

    captions: Annotated[list[Caption], Field(min_length=1), Limit("captions")]
    image_ids: ImageIds


class OneImage(BaseModel):
    """A form names its image by upload (`image`, which wins) or by `image_id`."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["image"]}, {"required": ["image_id"]}]})

    @model_validator(mode="after")
    def _needs_an_image(self) -> OneImage:
        if getattr(self, "image", None) is None and getattr(self, "image_id", None) is None:
            raise ValueError("upload an image in the field 'image' or give an image_id")
        return self


class SomeImages(BaseModel):
    """A form gives uploads in `images`, indexed ids in `image_ids`, or both; together within the limit."""

    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["images"]}, {"required": ["image_ids"]}]})

    @model_validator(mode="after")
    def _needs_images(self) -> SomeImages:
        count = len(getattr(self, "images", None) or ()) + len(getattr(self, "image_ids", None) or ())
        if count == 0:
            raise ValueError("give at least one image: uploads in 'images' or ids in 'image_ids'")
        if count > current_limits().images:
            raise ValueError(f"at most {current_limits().images} images (uploads and ids together), not {count}")
        return self


ClassifyForm = form_of(ClassifyBody, OneImage, image=(UploadedImage, None), image_id=(ImageId, None))
SimilarForm = form_of(SimilarBody, OneImage, image=(UploadedImage, None), image_id=(ImageId, None))
SimilarityForm = form_of(SimilarityBody, SomeImages, images=(Uploads, None), image_ids=(ImageIds, None))
QueryImages = Annotated[list[UploadedImage], Field(min_length=1, max_length=MAX_UPLOAD_TERMS,
                                                   description="images as terms of the query (weight 1 unless a "
                                                               "term names them by `upload`)")]
SearchForm = form_of(SearchBody, image=(QueryImages | None, None))


class SignedLink(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # None: absent (the spec keeps it a string, which a query parameter always is)
    sig: str = Field(None, max_length=64,  # type: ignore[assignment]
                     description="the signature that image links carry when the server has a key (instead of the "
                                 "Authorization header)")


class ThumbnailQuery(SignedLink):
    size: int = Field(256, ge=16, le=1024, description="longest side in pixels")


class DuplicatesQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Name | None = Field(None, description="the dataset (may be left out when only one is served)")
    tier: Literal["exact", "near", "similar"] | None = Field(None, description="one tier (all when absent)")
    offset: int = Field(0, ge=0, description="groups to skip")
    limit: int = Field(20, ge=1, description="groups per page; over the server's max_k it is capped (the answer's "
                                             "limit says)")
    near: Cosine | None = Field(None, description="near-duplicate threshold instead of the calibrated one")
    similar: Cosine | None = Field(None, description="similar-photo threshold instead of the calibrated one")
    videos: bool = Field(False, description="group the scenes of videos too (left out by default)")


class EvaluationsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: Name | None = Field(None, description="one dataset (all when absent)")

