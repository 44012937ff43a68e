"""Hot swap of the index set: a finished build is picked up, requests in flight keep their set."""
import dataclasses

from lib.data.synthetic import generate_dataset
from lib.ingest.image_index import build_image_index
from lib.model.loading import load_encoder
from lib.serve.index_set import LiveIndexSet
from lib.settings import load_settings


def test_a_new_build_is_picked_up_without_a_restart(tmp_path, tiny_dataset, demo_encoder):
    root, _ = tiny_dataset
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path), dataset_name="first",
                                                        dataset_path=str(root), num_workers=0))
    build_image_index(settings, demo_encoder, progress=False)
    live = LiveIndexSet(settings.indexes_dir, settings.indexes_text_dir, demo_encoder.identity, check_every=0)
    in_flight = live.current()
    assert set(in_flight.datasets) == {"first"}
    assert live.current() is in_flight  # nothing changed: the same set, nothing reloaded
    second_root = tmp_path / "second"
    generate_dataset(second_root, seed=9, per_class=1)
    build_image_index(dataclasses.replace(settings, dataset_name="second", dataset_path=second_root), demo_encoder,
                      progress=False)
    fresh = live.current()
    assert set(fresh.datasets) == {"first", "second"} and fresh is not in_flight
    # The request that started before the swap still searches its own, complete set.
    partition = next(iter(in_flight.datasets["first"].partitions.values()))
    assert partition.index.search(demo_encoder.encode_texts(["red"]), 1)[1][0][0] > 0


def test_datasets_of_another_model_are_left_out_with_the_reason(built_workspace, other_model_dir, demo_encoder,
                                                                 model_cache):
    other = load_encoder(str(other_model_dir), cache_dir=model_cache)
    live = LiveIndexSet(built_workspace.indexes_dir, built_workspace.indexes_text_dir, other.identity)
    current = live.current()
    assert not current.datasets and not current.vocabularies
    assert "was built with model 'demo'" in current.left_out["dataset tiny"]
    assert set(current.left_out) == {"dataset tiny", f"vocabulary text_tiny_{demo_encoder.dim}"}
