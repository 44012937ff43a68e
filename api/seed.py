"""The seed project's JSON API under /api/, so clients written for rhubarbwu/Multimodal-CLIP-Applications keep working.

The requests and answers are the seed's (its retrieval.py); README.md maps them to the routes above.
Unlike the seed, a request it would have crashed on (a missing field, an unknown repo, an index past the
end) gets a 4xx JSON error, and fields the seed never read are ignored rather than refused.
"""
from __future__ import annotations

from typing import Annotated, Any

from flask import Blueprint, current_app, jsonify
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from api.limits import MAX_IMAGE_ID
from api.models import Name, Query, integral
from api.validation import body, operation
from lib.serve.seed import Placed, SeedView

seed_bp = Blueprint("seed", __name__)
GALLERY_SIZE = 6  # what the seed's gallery showed

Repos = Annotated[list[Name], Field(min_length=1, max_length=100, description="names of datasets (image repos) or "
                                    "vocabularies (text repos), in the order that positions count them")]
Neighbours = Annotated[int, Field(ge=1, description="how many; capped at max_k"), BeforeValidator(integral)]
Position = Annotated[int, Field(ge=0, le=MAX_IMAGE_ID, description="0-based position of an image across repos"),
                     BeforeValidator(integral)]


class SeedBody(BaseModel):
    model_config = ConfigDict(strict=True, extra="ignore", allow_inf_nan=False)
    repos: Repos


class SeedSearch(SeedBody):
    query: Query
    n_neighbours: Neighbours = 25


class SeedSimilar(SeedBody):
    index: Position
    n_neighbours: Neighbours = 25


class SeedClassify(SeedSimilar):
    txt_repos: Repos


class SeedGallery(SeedBody):
    mode: dict[str, Any] | None = Field(None, description="read by the seed's gallery and not used; ignored")


class RepoList(BaseModel):
    repos: list[str]


class Filepaths(BaseModel):
    filepaths: list[tuple[int, str]] = Field(description="[position, file path on the server] pairs")


class Classified(BaseModel):
    classified: list[tuple[int, str]] = Field(description="[position across the text repos, label] pairs")


class Nothing(BaseModel):
    pass


def view() -> SeedView:
    return SeedView(current_app.extensions["clipsearch"])


def neighbours(asked: Any) -> int:
    return min(asked.n_neighbours, current_app.config["SETTINGS"].max_k)


def pairs(placed: list[Placed]) -> list[tuple[int, str]]:
    return [(p.position, p.text) for p in placed]


@seed_bp.post("/repos-images")
@operation(RepoList, errors=(401,))
def repos_images():
    """The seed's list of image repos: the datasets."""
    return jsonify({"repos": view().image_repos()})


@seed_bp.post("/repos-text")
@operation(RepoList, errors=(401,))
def repos_text():
    """The seed's list of text repos: the vocabularies."""
    return jsonify({"repos": view().text_repos()})


@seed_bp.route("/index", methods=["GET", "POST"])
@operation(Nothing, errors=(401,))
def reindex():
    """The seed reloaded its repos here; the index set reloads by itself when a build finishes."""
    return jsonify({})


@seed_bp.post("/search")
@operation(Filepaths, json=SeedSearch, errors=(400, 401, 404))
def seed_search():
    """Images of the chosen repos by text."""
    asked = body()
    return jsonify({"filepaths": pairs(view().search(asked.repos, asked.query.strip(), neighbours(asked)))})


@seed_bp.post("/similar")
@operation(Filepaths, json=SeedSimilar, errors=(400, 401, 404))
def seed_similar():
    """Images like the one at `index`, itself left out."""
    asked = body()
    return jsonify({"filepaths": pairs(view().similar(asked.repos, asked.index, neighbours(asked)))})


@seed_bp.post("/classify")
@operation(Classified, json=SeedClassify, errors=(400, 401, 404))
def seed_classify():
    """Labels of the text repos nearest to the image at `index`."""
    asked = body()
    return jsonify({"classified": pairs(view().classify(asked.repos, asked.txt_repos, asked.index, neighbours(asked)))})


@seed_bp.post("/gallery")
@operation(Filepaths, json=SeedGallery, errors=(400, 401, 404))
def gallery():
    """Six images of the chosen repos, picked at random."""
    return jsonify({"filepaths": pairs(view().gallery(body().repos, GALLERY_SIZE))})
