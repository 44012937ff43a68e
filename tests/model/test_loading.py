import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lib.data.synthetic import Scene, draw_scene
from lib.errors import IndexMismatchError, ModelLoadError
from lib.model.loading import DEMO_MODEL_DIR, load_encoder, resolve_spec
from lib.model.preprocess import ClipTransform
from lib.store.identity import ModelIdentity


def scene_image(colour: str, shape: str, seed: int = 0) -> Image.Image:
    import random
    return draw_scene(Scene(colour, shape, 1, "large", "plain"), random.Random(seed))


def test_demo_embeddings_are_normalised_float32(demo_encoder):
    images = [scene_image("red", "circle"), scene_image("blue", "square"), Image.new("RGB", (300, 120), "white")]
    image_vectors = demo_encoder.encode_images(images, batch_size=2)
    text_vectors = demo_encoder.encode_texts(["red circle", "blue square", "a photo of a white wall"])
    for vectors in (image_vectors, text_vectors):
        assert vectors.shape == (3, demo_encoder.dim) and vectors.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert demo_encoder.encode_texts([]).shape == (0, demo_encoder.dim)
    assert demo_encoder.encode_images([]).shape == (0, demo_encoder.dim)


def test_same_text_same_embedding(demo_encoder):
    once = demo_encoder.encode_texts(["two small green stars"])
    twice = demo_encoder.encode_texts(["two small green stars"])
    np.testing.assert_array_equal(once, twice)
    # In another batch the matrix kernels may sum in another order: equal up to float rounding.
    in_batch = demo_encoder.encode_texts(["red", "two small green stars"])
    np.testing.assert_allclose(in_batch[1], once[0], atol=1e-6)
    assert float(in_batch[0] @ once[0]) < 0.99


def test_text_longer_than_context_is_truncated(demo_encoder):
    long_text = " ".join(["red circle"] * 500)
    vector = demo_encoder.encode_texts([long_text])
    assert vector.shape == (1, demo_encoder.dim) and np.isfinite(vector).all()


def test_texts_find_their_images(demo_encoder):
    pairs = [("red", "circle"), ("blue", "square"), ("yellow", "star"), ("green", "triangle")]
    images = demo_encoder.encode_images([scene_image(c, s) for c, s in pairs])
    texts = demo_encoder.encode_texts([f"a photo of a {c} {s}." for c, s in pairs])
    assert (np.argmax(images @ texts.T, axis=1) == np.arange(len(pairs))).all()


def test_local_model_folder_is_the_same_model(tmp_path: Path, demo_encoder, model_cache):
    """A copy of a model is the same model: the same identity, and the conversion cached for the original."""
    folder = tmp_path / "my-model"
    shutil.copytree(DEMO_MODEL_DIR, folder)
    converted = set((model_cache / "openvino").iterdir())
    encoder = load_encoder(str(folder), cache_dir=model_cache)
    assert set((model_cache / "openvino").iterdir()) == converted
    assert encoder.identity.weights_sha256 == demo_encoder.identity.weights_sha256
    assert encoder.identity.spec == str(folder)
    np.testing.assert_allclose(encoder.encode_texts(["red"]), demo_encoder.encode_texts(["red"]), atol=1e-6)


def test_corrupt_weights_give_one_clear_error(tmp_path: Path):
    folder = tmp_path / "broken"
    shutil.copytree(DEMO_MODEL_DIR, folder)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: 5000])
    with pytest.raises(ModelLoadError, match="could not be loaded.*corrupt") as info:
        load_encoder(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_folder_without_weights(tmp_path: Path):
    folder = tmp_path / "empty-model"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="has no weights"):
        load_encoder(str(folder))
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_encoder(str(tmp_path / "nowhere"))


def test_unknown_hub_name_offline():
    with pytest.raises(ModelLoadError, match="not in the Hugging Face cache and offline mode is on") as info:
        load_encoder("someone/clip-that-does-not-exist", offline=True)
    assert "demo" in str(info.value)


def test_short_names_resolve_to_hub_ids():
    assert resolve_spec("ViT-B/32") == "openai/clip-vit-base-patch32"
    assert resolve_spec("ViT-L/14@336px") == "openai/clip-vit-large-patch14-336"
    assert resolve_spec("laion/CLIP-ViT-B-32-laion2B-s34B-b79K") == "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
    assert resolve_spec("demo") == str(DEMO_MODEL_DIR)
    assert resolve_spec("random:ViT-B/32") == "random:openai/clip-vit-base-patch32"


def test_identity_refuses_other_weights(demo_encoder):
    same = ModelIdentity.from_dict(demo_encoder.identity.to_dict())
    demo_encoder.identity.check_same(same, "index x")
    other = ModelIdentity("ViT-B/32", "0" * 64, 512)
    with pytest.raises(IndexMismatchError, match="index x was built with model 'ViT-B/32'"):
        demo_encoder.identity.check_same(other, "index x")


def test_transform_matches_the_transformers_processor():
    from transformers import CLIPImageProcessorPil

    processor = CLIPImageProcessorPil.from_pretrained(str(DEMO_MODEL_DIR))
    transform = ClipTransform.from_pretrained(DEMO_MODEL_DIR)
    rng = np.random.default_rng(0)
    for size in [(64, 64), (200, 90), (47, 130)]:
        image = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        np.testing.assert_allclose(transform(image), expected, atol=1e-4)


def test_random_full_size_architecture_for_timing():
    """random:ViT-B/32 is the full architecture with seeded random weights, identified by their digest."""
    encoder = load_encoder("random:ViT-B/32", precision="fp32", backend="torch")
    assert encoder.dim == 512 and encoder.transform.crop_height == 224
    assert len(encoder.identity.weights_sha256) == 64
    vectors = encoder.encode_images([scene_image("red", "circle")])
    assert vectors.shape == (1, 512) and abs(float(np.linalg.norm(vectors)) - 1.0) < 1e-5
    # It pools each text at its own EOS token (the demo tokenizer's), so different texts differ.
    texts = encoder.encode_texts(["red circle", "two blue squares on a striped background", "a photo"])
    assert (texts @ texts.T)[np.triu_indices(3, 1)].max() < 0.99
    assert load_encoder("random:ViT-B/32", backend="torch").identity == encoder.identity
    with pytest.raises(ModelLoadError, match="no random architecture"):
        load_encoder("random:ViT-H/14")
