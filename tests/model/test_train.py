import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import AutoTokenizer

from lib.model.loading import load_encoder
from lib.model.losses import contrastive_loss
from lib.model.small_clip import Architecture, new_model, train_tokenizer
from lib.model.train import all_captions, main, make_loader, read_captions, train_steps

TINY = Architecture(width=32, layers=1, heads=2, embed_dim=16, image_size=32, patch_size=8, context_length=24)


def test_tokenizer_is_clip_format(tmp_path, tiny_dataset):
    root, _ = tiny_dataset
    texts = [c for captions in read_captions(root).values() for c in captions]
    tokenizer = train_tokenizer(texts, vocab_size=600, context_length=24)
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(reloaded).__name__ == "CLIPTokenizer"
    assert reloaded.tokenize("Red  Circle") == ["red</w>", "circle</w>"]
    ids = reloaded("ünïcode ☃ text")["input_ids"]
    assert ids[0] == reloaded.bos_token_id and ids[-1] == reloaded.eos_token_id
    assert reloaded.unk_token_id not in ids[1:-1]  # byte-level: every text has a spelling


def test_loss_counts_shared_captions_as_positives():
    scale = torch.tensor(np.log(100.0))
    assert contrastive_loss(torch.eye(4), torch.eye(4), scale, torch.arange(4)) < 1e-3
    # Two pairs with the same caption: embedding them alike (together) must cost less than apart,
    # whereas plain one-positive InfoNCE prefers them apart.
    eye = torch.eye(4)
    together = torch.stack([eye[0], eye[0], eye[2], eye[3]])
    apart = eye
    shared, distinct = torch.tensor([0, 0, 1, 2]), torch.arange(4)
    assert contrastive_loss(together, together, scale, shared) < contrastive_loss(apart, apart, scale, shared)
    assert contrastive_loss(apart, apart, scale, distinct) < contrastive_loss(together, together, scale, distinct)


def test_a_short_training_run_lowers_the_loss(tiny_dataset):
    root, _ = tiny_dataset
    torch.manual_seed(0)
    model, tokenizer, transform = new_model(all_captions(root), TINY, vocab_size=400)
    loader = make_loader(root, transform, tokenizer, TINY.context_length, batch_size=36, num_workers=0, seed=0)
    losses = train_steps(model, loader, steps=100, lr=3e-3, warmup=5)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_cli_writes_a_model_that_loads_like_any_clip(tmp_path):
    out = tmp_path / "model"
    data = tmp_path / "data"
    main([str(out), "--data", str(data), "--synthetic", "1", "--steps", "2", "--batch-size", "16",
          "--num-workers", "0", "--width", "32", "--layers", "1", "--heads", "2", "--embed-dim", "16",
          "--image-size", "32", "--patch-size", "8", "--vocab-size", "400"])
    assert {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt",
            "preprocessor_config.json", "train_log.csv"} <= {p.name for p in out.iterdir()}
    assert len((out / "train_log.csv").read_text().splitlines()) == 3
    encoder = load_encoder(str(out))
    assert encoder.encode_texts(["red circle"]).shape == (1, 16)


def test_fine_tuning_starts_from_the_service_model(demo_encoder):
    """--init loads the same weights the service encodes with, in fp32, as a trainable CLIPModel."""
    from lib.model.torch_backend import TorchTowers
    from lib.model.train import pretrained_model

    model, tokenizer, transform = pretrained_model("demo")
    assert transform == demo_encoder.transform and next(model.parameters()).dtype == torch.float32
    tokens = demo_encoder.tokenize(["two red circles"])
    features = TorchTowers(model, torch.device("cpu"), torch.float32).text_features(**tokens)[0]
    assert float(features @ demo_encoder.encode_texts(["two red circles"])[0]) / np.linalg.norm(features) > 0.999


def test_the_image_to_image_term_rewards_telling_each_picture_from_the_others():
    from lib.model.losses import instance_loss

    features = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    assert float(instance_loss(features, features)) < float(instance_loss(features, features.roll(1, dims=0)))


def test_a_trained_model_takes_a_larger_input_at_the_same_grid(demo_encoder):
    """resize_input: the same picture at 1.5x the side, through resampled patch kernels, embeds as it did."""
    from lib.model.small_clip import resize_input
    from lib.model.train import image_features, pretrained_model

    model, _, transform = pretrained_model("demo")
    side, patch = transform.size, int(model.config.vision_config.patch_size)
    image = Image.new("RGB", (side, side), (200, 200, 200))
    ImageDraw.Draw(image).regular_polygon((side / 2, side / 2, side / 3), 5, fill=(215, 38, 38))
    with torch.no_grad():
        before = image_features(model, torch.from_numpy(transform(image))[None])
        larger = resize_input(model, side * 3 // 2, patch * 3 // 2)
        after = image_features(model, torch.from_numpy(larger(image))[None])
    assert larger.size == side * 3 // 2 and model.config.vision_config.image_size == side * 3 // 2
    assert float(torch.nn.functional.cosine_similarity(before, after)) > 0.9
    with pytest.raises(ValueError, match="grid"):
        resize_input(model, side * 2, patch)


def test_init_refuses_an_architecture_change_in_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main([str(tmp_path / "out"), "--data", str(tmp_path), "--init", "demo", "--width", "64"])
    assert "only --image-size and --patch-size" in capsys.readouterr().err
