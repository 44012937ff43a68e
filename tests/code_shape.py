"""Find blocks of code that stand twice: the same lines, or the same shape with other names and values."""
from __future__ import annotations

import io
import keyword
import tokenize
from collections import defaultdict
from pathlib import Path

WINDOW = 6  # lines: a shorter run is too common to mean copied logic
SKIPPED_TOKENS = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                  tokenize.ENDMARKER, getattr(tokenize, "FSTRING_MIDDLE", -1), getattr(tokenize, "FSTRING_END", -1)}
STRING_TOKENS = {tokenize.STRING, getattr(tokenize, "FSTRING_START", -1)}


def _token_shape(token: tokenize.TokenInfo) -> str | None:
    if token.type in SKIPPED_TOKENS:
        return None
    if token.type == tokenize.NAME and not keyword.iskeyword(token.string):
        return "N"
    if token.type in STRING_TOKENS:
        return "S"
    return "0" if token.type == tokenize.NUMBER else token.string


def line_shapes(path: Path) -> list[tuple[int, str]]:
    """(line number, shape) of every line that holds code: names become N, strings S, numbers 0."""
    lines: dict[int, list[str]] = defaultdict(list)
    for token in tokenize.generate_tokens(io.StringIO(path.read_text()).readline):
        shape = _token_shape(token)
        if shape is not None:
            lines[token.start[0]].append(shape)
    return [(number, " ".join(parts)) for number, parts in sorted(lines.items())]


def _declarative(shape: str) -> bool:
    """Imports, decorators and field declarations (`name: type = value`, or `= field(...)` with plain values)
    are data, not logic."""
    return shape.startswith(("import ", "from ", "@")) or (shape.startswith("N : N") and shape.count("(") <= 1)


def _counts(window: list[tuple[int, str]]) -> bool:
    """A window counts when it is logic of some substance: not all declarations, few thin lines."""
    return not all(_declarative(s) for _, s in window) and sum(len(s.split()) >= 4 for _, s in window) >= WINDOW - 1


def repeated_blocks(paths: list[Path]) -> list[list[tuple[str, int, int]]]:
    """Each shape of WINDOW consecutive code lines found in more than one place, with its places."""
    places = defaultdict(list)
    for path in paths:
        shapes = line_shapes(path)
        for start in range(len(shapes) - WINDOW + 1):
            window = shapes[start:start + WINDOW]
            if _counts(window):
                places[tuple(s for _, s in window)].append((path.name, window[0][0], window[-1][0]))
    return [found for found in places.values() if len(found) > 1]
