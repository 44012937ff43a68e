"""The index set as the seed project (rhubarbwu/Multimodal-CLIP-Applications) saw it, for clients written for it.

There, image datasets and vocabularies were "repos", and an image or label was named by its 0-based
position across the repos a request chose, in the order it chose them: the place of its vector in the
merged index. Here a dataset's order is its partitions in name order, each in its index's order
(`LoadedDataset.order`), so positions stay put when a build only adds images.
"""
from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lib.errors import NotFoundError
from lib.serve.loaded_dataset import LoadedDataset
from lib.serve.search import SearchService
from lib.store.id_order import merge
from lib.store.names import shown
from lib.store.vocab_index import TextIndex


@dataclass(frozen=True)
class Placed:
    """An image (its file path) or a label, with its position across the chosen repos."""

    position: int
    text: str


class SeedView:
    """Answers the seed's questions with the service's encoder and index set."""

    def __init__(self, service: SearchService) -> None:
        self.service = service

    def image_repos(self) -> list[str]:
        return sorted(self.service.indexes.current().datasets)

    def text_repos(self) -> list[str]:
        return sorted(self.service.indexes.current().vocabularies)

    @staticmethod
    def _chosen(known: dict, names: Sequence[str], what: str) -> list:
        unknown = [name for name in names if name not in known]
        if unknown:
            raise NotFoundError(f"unknown {what} repo {unknown[0]!r}; known: {', '.join(sorted(known)) or 'none'}")
        return [known[name] for name in dict.fromkeys(names)]

    def _datasets(self, repos: Sequence[str]) -> list[LoadedDataset]:
        return self._chosen(self.service.indexes.current().datasets, repos, "image")

    @staticmethod
    def _id_at(datasets: list[LoadedDataset], position: int) -> int:
        place = position
        for dataset in datasets:
            if place < len(dataset.order):
                return int(dataset.order.ids[place])
            place -= len(dataset.order)
        total = sum(len(d.order) for d in datasets)
        raise NotFoundError(f"no image at index {position}: the chosen repos hold {total} (0 to {total - 1})")

    def _placed(self, datasets: list[LoadedDataset], ids: Sequence[int]) -> list[Placed]:
        """Ids as (position, file path), in the given order; ids no longer indexed are left out."""
        records, found, offset = self.service.records(ids), {}, 0
        for dataset in datasets:
            for image_id, place in zip(ids, dataset.order.places(ids), strict=True):
                if place is not None:
                    found[image_id] = offset + place
            offset += len(dataset.order)
        return [Placed(found[i], shown(str(self.service.image_path(records[i])))) for i in ids
                if i in found and i in records]

    def _nearest(self, datasets: list[LoadedDataset], vector: np.ndarray, n: int, exclude: int | None = None
                 ) -> list[Placed]:
        depth = n + (exclude is not None)
        found = [d.search(vector, depth) for d in datasets if d.partitions]
        if not found:
            return []
        _, ids = merge(found, depth)
        return self._placed(datasets, [int(i) for i in ids[0] if i >= 0 and i != exclude][:n])

    def search(self, repos: Sequence[str], query: str, n: int) -> list[Placed]:
        datasets = self._datasets(repos)
        return self._nearest(datasets, self.service.text_vector(query), n)

    def similar(self, repos: Sequence[str], position: int, n: int) -> list[Placed]:
        datasets = self._datasets(repos)
        image_id = self._id_at(datasets, position)
        return self._nearest(datasets, self.service.image_vector(image_id=image_id), n, exclude=image_id)

    def classify(self, repos: Sequence[str], text_repos: Sequence[str], position: int, n: int) -> list[Placed]:
        """The n labels nearest to the image, across the chosen vocabularies, by cosine."""
        datasets = self._datasets(repos)
        vector = self.service.image_vector(image_id=self._id_at(datasets, position))
        vocabularies: list[TextIndex] = self._chosen(self.service.indexes.current().vocabularies, text_repos, "text")
        scored, offset = [], 0
        for vocabulary in vocabularies:
            scores, ids = vocabulary.index.search(vector, min(n, vocabulary.index.ntotal))
            scored += [(float(s), offset + int(i), vocabulary.entries[i].label)
                       for s, i in zip(scores[0], ids[0], strict=True) if i >= 0]
            offset += len(vocabulary.entries)
        return [Placed(position, label) for _, position, label in sorted(scored, key=lambda s: -s[0])[:n]]

    def gallery(self, repos: Sequence[str], count: int, rng: random.Random | None = None) -> list[Placed]:
        """`count` images picked at random from the chosen repos."""
        datasets = self._datasets(repos)
        total = sum(len(d.order) for d in datasets)
        positions = (rng or random.Random()).sample(range(total), min(count, total))
        return [placed for position in positions
                for placed in self._placed(datasets, [self._id_at(datasets, position)])]
