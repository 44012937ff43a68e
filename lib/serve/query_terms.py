"""Composed queries: weighted texts and images summed into one query vector, and the search box's grammar.

A query is a list of terms, each a text, an indexed image (its id) or an uploaded image, with a weight.
Its vector is the weighted sum of the terms' normalised embeddings, normalised again (rclip's query
arithmetic): `red circle - circle + square` asks for red things that are squares.

The grammar of the search box (`parse_query`), read left to right:
- terms are joined by ` + ` and ` - ` (a sign with a space on each side, or one at the very start), so
  that a hyphen inside a word (`t-shirt`, `black-and-white`) stays part of it;
- `2:red` or `0.5:red` gives a term a weight (a number, then a colon, then the term);
- `img:12` is the indexed image with id 12 (`2:img:12` weighs it);
- a term in double quotes is taken as it is (`"img:12"`, `"a - b"`).
Nothing else is special: a query without signs, weights or `img:` is one text of weight 1, as before.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lib.errors import QueryError

MAX_TERMS = 16
MAX_WEIGHT = 100.0
_SIGN = re.compile(r'"[^"]*"|(?:^|(?<=\s))[+-](?=\s|$)|(?:^)[+-](?=\S)')
_WEIGHT = re.compile(r"^(?P<weight>[0-9]+(?:\.[0-9]*)?|\.[0-9]+):(?P<rest>.+)$", re.S)
_IMAGE = re.compile(r"^img:(?P<id>[0-9]+)$", re.I)


@dataclass(frozen=True)
class Term:
    """One part of a composed query: exactly one of text, image_id or upload (an uploaded image's number)."""

    weight: float
    text: str | None = None
    image_id: int | None = None
    upload: int | None = None

    def to_dict(self) -> dict:
        kind = ("text", self.text) if self.text is not None else (
            ("image_id", self.image_id) if self.image_id is not None else ("upload", self.upload))
        return {kind[0]: kind[1], "weight": self.weight}


def _pieces(query: str) -> list[tuple[int, str]]:
    """The query cut at its signs: (sign, text) pairs, quotes kept for _term to read."""
    pieces, sign, start = [], 1, 0
    for match in _SIGN.finditer(query):
        if match.group().startswith('"'):
            continue
        pieces.append((sign, query[start:match.start()]))
        sign, start = (1 if match.group() == "+" else -1), match.end()
    pieces.append((sign, query[start:]))
    if not pieces[0][1].strip() and len(pieces) > 1:  # a sign at the very start: it belongs to the next term
        pieces = pieces[1:]
    return pieces


def _term(sign: int, text: str, position: int) -> Term:
    text, weight = text.strip(), 1.0
    found = None if text.startswith('"') else _WEIGHT.match(text)
    if found:
        weight, text = float(found["weight"]), found["rest"].strip()
    quoted = len(text) >= 2 and text[0] == text[-1] == '"'
    text = text[1:-1].strip() if quoted else text
    if not text:
        raise QueryError(f"query: term {position} is empty (two signs in a row, or a sign at the end?)")
    image = None if quoted else _IMAGE.match(text)
    if image:
        return Term(sign * weight, image_id=int(image["id"]))
    return Term(sign * weight, text=text)


def parse_query(query: str) -> list[Term]:
    """The terms of a search box's query (see the module's docstring); QueryError names what cannot be read."""
    terms = [_term(sign, text, n) for n, (sign, text) in enumerate(_pieces(query), 1)]
    check_terms(terms)
    return terms


def check_terms(terms: Sequence[Term]) -> None:
    """QueryError for an empty list, too many terms, a weight that is 0, not finite or too large."""
    if not terms:
        raise QueryError("terms: give at least one term")
    if len(terms) > MAX_TERMS:
        raise QueryError(f"terms: at most {MAX_TERMS} terms, not {len(terms)}")
    for n, term in enumerate(terms, 1):
        if not math.isfinite(term.weight) or term.weight == 0 or abs(term.weight) > MAX_WEIGHT:
            raise QueryError(f"terms: term {n} has weight {term.weight}; a weight is a non-zero number between "
                             f"-{MAX_WEIGHT:g} and {MAX_WEIGHT:g}")


def query_vector(terms: Sequence[Term], embed: Callable[[Term], np.ndarray]) -> np.ndarray:
    """The (1, dim) unit vector of the weighted sum of the terms' unit embeddings (`embed` gives one (1, dim))."""
    total: np.ndarray | None = None
    for term in terms:
        vector = np.asarray(embed(term), np.float64).reshape(1, -1)
        norm = float(np.linalg.norm(vector))
        part = term.weight * vector / norm if norm > 0 else 0 * vector
        total = part if total is None else total + part
    assert total is not None, "check_terms refuses an empty list"
    norm = float(np.linalg.norm(total))
    if norm < 1e-6:
        raise QueryError("terms: the terms cancel out (their weighted sum is zero); change a weight or a term")
    return (total / norm).astype(np.float32)


def texts_of(terms: Sequence[Term]) -> list[str]:
    """The texts of the terms that count for (positive weight): what a text match looks for."""
    return [term.text for term in terms if term.text is not None and term.weight > 0]
