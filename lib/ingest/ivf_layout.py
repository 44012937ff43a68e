"""The `auto` index choice of a dataset: exact below the crossover, else IVF with codes that fit the memory budget.

Measured at 512-d on one thread (docs/benchmarks.md): an exact scan costs about 0.04 us a vector (4 ms at
100,000), so ~2 ms at 50,000 vectors, the default `ivf_min_vectors`, a tenth of the text encoder; above it
the scan grows linearly while IVF answers in under a millisecond. The rules
follow autofaiss's (nlist ~ 4 sqrt(N), a training sample of ~40 x nlist, codes sized from the budget),
written out here because autofaiss picks one whole index per dataset with no notion of partitions
sharing a quantizer, and its wheel pins numpy<2 (it does not import beside this project's pyarrow).
"""
from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass

from lib.errors import SettingsError
from lib.settings import Settings

MAX_NLIST = 8192  # at 10M vectors 16384 lists would double k-means and assignment time (~16 min) for 0.2 ms
MIN_NLIST = 16
SAMPLE_PER_LIST = 40  # faiss warns below 39; 64 gave recall within 0.01 of 39 in the prototype
ID_BYTES = 8
AUTO_BUDGET_SHARE = 0.7
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class IvfLayout:
    nlist: int
    storage: str  # flat, sq8 or pq<m>
    sample: int  # vectors the quantizer and codec are trained on
    fits: bool  # whether the codes (and re-rank vectors) fit the budget


def parse_size(text: str) -> int:
    """'16G', '800M', '1.5GB', '1000000' as bytes."""
    match = _SIZE.match(text)
    if not match:
        raise SettingsError(f"memory_budget {text!r} is not a size like 16G, 800M or auto")
    return int(float(match.group(1)) * 1024 ** " KMGT".index((match.group(2) or " ").upper()))


def memory_budget(setting: str) -> int:
    """The budget in bytes; `auto` is a share of this machine's memory (the model and workers need the rest)."""
    if setting.strip().lower() == "auto":
        return int(AUTO_BUDGET_SHARE * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    return parse_size(setting)


def nlist_for(count: int) -> int:
    """A power of two near 4 sqrt(count), with at least SAMPLE_PER_LIST vectors to train each list on."""
    wanted = 2 ** round(math.log2(max(4 * math.sqrt(count), 1)))
    enough = 2 ** int(math.log2(max(count // SAMPLE_PER_LIST, 1)))
    return max(MIN_NLIST, min(wanted, enough, MAX_NLIST))


def bytes_per_vector(storage: str, dim: int) -> int:
    """Memory a vector needs for search to stay fast: its code and id, and for compressed codes its float16
    copy, which re-ranking reads for every candidate."""
    if storage == "flat":
        return 4 * dim + ID_BYTES
    code = dim if storage == "sq8" else int(storage[2:])
    return code + ID_BYTES + 2 * dim


def storages(dim: int) -> list[str]:
    """From the most to the least exact: flat, SQ8, then PQ with dim/8 and dim/16 bytes."""
    return ["flat", "sq8"] + [f"pq{m}" for m in (dim // 8, dim // 16) if m >= 1 and dim % m == 0]


def choose_layout(count: int, dim: int, settings: Settings) -> IvfLayout | None:
    """None (exact search) for a small dataset or a non-auto index type; else the IVF to build."""
    if settings.index_type != "auto" or count < settings.ivf_min_vectors:
        return None
    budget = memory_budget(settings.memory_budget)
    options = storages(dim)
    storage = next((s for s in options if bytes_per_vector(s, dim) * count <= budget), options[-1])
    nlist = nlist_for(count)
    return IvfLayout(nlist, storage, min(count, SAMPLE_PER_LIST * nlist),
                     bytes_per_vector(storage, dim) * count <= budget)
