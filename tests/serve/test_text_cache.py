"""The cache of text embeddings: a text is encoded once while it stays among the most recently asked, the
least recently asked goes first, every lookup is reported as a hit or a miss, and no caller can change a
vector another one will get."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lib.serve.text_cache import TextVectors


class CountingEncoder:
    def __init__(self) -> None:
        self.encoded: list[str] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.encoded += texts
        return np.asarray([[len(text), ord(text[0])] for text in texts], np.float32)


def test_a_text_is_encoded_once_and_the_least_recent_goes_first():
    encoder, heard = CountingEncoder(), []
    vectors = TextVectors(encoder, size=2, on_lookup=heard.append)
    assert vectors("red").tolist() == [[3, ord("r")]]
    vectors("blue")
    vectors("red")  # red is now the more recent of the two
    vectors("green")  # so blue goes
    vectors("red")
    vectors("blue")
    assert encoder.encoded == ["red", "blue", "green", "blue"]
    assert heard == [False, False, True, False, True, False]


def test_size_zero_keeps_nothing():
    encoder = CountingEncoder()
    vectors = TextVectors(encoder, size=0)
    vectors("red")
    vectors("red")
    assert encoder.encoded == ["red", "red"]


def test_the_vectors_given_out_cannot_be_changed():
    vectors = TextVectors(CountingEncoder(), size=4)
    first = vectors("red")
    with pytest.raises(ValueError, match="read-only"):
        first *= 2
    assert (2 * first).tolist() == [[6, 2 * ord("r")]]  # arithmetic that makes a new array still works
    assert vectors("red").tolist() == [[3, ord("r")]]


def test_threads_each_hear_of_their_own_lookups():
    encoder, heard = CountingEncoder(), []
    vectors = TextVectors(encoder, size=64, on_lookup=heard.append)
    texts = [f"text {i % 8}" for i in range(400)]
    with ThreadPoolExecutor(8) as pool:
        found = list(pool.map(vectors, texts))
    assert [v.tolist() for v in found] == [[[len(t), ord("t")]] for t in texts]
    assert len(heard) == 400 and heard.count(False) == len(encoder.encoded) >= 8
    assert set(encoder.encoded) == set(texts)
