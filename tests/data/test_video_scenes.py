"""The cut rule and the frames it has embedded, on made-up embeddings whose scenes are known: a jump is a cut
by its size against the pairs around it, not by a fixed cosine, and embedding every other frame first finds
the same cuts as embedding them all."""
import numpy as np
import pytest

from lib.data.video_scenes import CUT_RULE, CutRule, cut_points, embedded_frames, frame_distances


def drifting(scene_lengths: list[int], step: float, seed: int = 0, dim: int = 64) -> np.ndarray:
    """L2-normalised vectors of frames in time order: each scene a random direction, its frames moving
    `step` a frame from it (a pan), so consecutive frames of one scene differ and scenes differ more."""
    rng = np.random.default_rng(seed)
    frames = []
    for length in scene_lengths:
        here = rng.standard_normal(dim)
        here /= np.linalg.norm(here)
        for _ in range(length):
            frames.append(here.copy())
            here = here + step * rng.standard_normal(dim) / np.sqrt(dim)
            here /= np.linalg.norm(here)
    return np.asarray(frames, np.float32)


def blended(vectors: np.ndarray, towards: np.ndarray, amount: float) -> np.ndarray:
    mixed = (1 - amount) * vectors + amount * towards
    return mixed / np.linalg.norm(mixed, axis=1, keepdims=True)


def test_a_cut_is_a_jump_against_its_neighbours_at_any_scale():
    lengths = [6, 3, 8, 2, 5]
    starts = list(np.cumsum([0, *lengths[:-1]]))
    vectors = drifting(lengths, step=0.05)
    assert cut_points(vectors) == starts
    # The same footage through a model that packs everything close (as random weights do): the jumps are now
    # small cosines, but still far above the drift around them.
    common = np.ones(vectors.shape[1], np.float32) / np.sqrt(vectors.shape[1])
    squeezed = blended(vectors, common, 0.85)
    assert frame_distances(squeezed).max() < 0.1
    assert cut_points(squeezed) == starts


def test_a_steady_pan_is_one_scene_however_far_it_moves():
    vectors = drifting([40], step=0.3, seed=2)
    assert frame_distances(vectors).min() > CUT_RULE.min_distance  # every pair past the floor...
    assert cut_points(vectors) == [0]  # ...and none a jump against its neighbours
    assert cut_points(vectors, CutRule(ratio=0.0)) == list(range(40))  # the floor alone would cut everywhere


def test_still_frames_below_the_floor_are_never_cut():
    still = drifting([20], step=1e-4, seed=3)
    assert cut_points(still) == [0]


@pytest.mark.parametrize("lengths", [[6, 3, 8, 2, 5], [1, 1, 4, 1, 7], [9], [2, 2, 2, 2, 2, 3]])
def test_embedding_every_other_frame_first_finds_the_same_cuts(lengths):
    vectors = drifting(lengths, step=0.05, seed=len(lengths))
    asked: list[int] = []

    def embed(indexes):
        asked.extend(indexes)
        return vectors[list(indexes)]

    indexes, embedded = embedded_frames(len(vectors), embed)
    assert indexes == sorted(set(asked)) and len(asked) == len(set(asked))  # none embedded twice
    assert np.array_equal(embedded, vectors[indexes])
    assert [indexes[i] for i in cut_points(embedded)] == cut_points(vectors)


@pytest.mark.parametrize("count", [9, 10])
def test_a_still_scene_has_every_other_frame_embedded(count):
    vectors = drifting([count], step=0.01)
    indexes, _ = embedded_frames(count, lambda chosen: vectors[list(chosen)])
    assert indexes == sorted({*range(0, count, 2), count - 1})


@pytest.mark.parametrize("count", [1, 2])
def test_few_frames_are_all_embedded(count):
    frames = drifting([count], 0.05)
    indexes, vectors = embedded_frames(count, lambda chosen: frames[list(chosen)])
    assert indexes == list(range(count)) and len(vectors) == count
