import numpy as np
import torch
from transformers import AutoTokenizer

from lib.model.loading import load_encoder
from lib.model.small_clip import Architecture, new_model, train_tokenizer
from lib.model.train import all_captions, contrastive_loss, main, make_loader, read_captions, train_steps

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
