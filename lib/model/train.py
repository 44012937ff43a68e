"""Train a small CLIP from scratch, or fine-tune one, on captioned images (symmetric contrastive loss).

    python -m lib.model.train models/demo-clip --data data/train-synthetic --synthetic 600

The data folder holds images and a captions.csv with columns image (path relative to the folder)
and caption; an image may have several rows, one caption of which is drawn each time it is seen.
The result is a model folder that loads through the same code as openai/clip-vit-base-patch32.
"""
from __future__ import annotations

import argparse
import csv
import logging
import math
import random
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from lib.cli import new_parser, run
from lib.data.images import open_image
from lib.data.variants import random_edit
from lib.errors import TrainingDataError
from lib.model.losses import contrastive_loss, instance_loss
from lib.model.preprocess import ClipTransform
from lib.model.small_clip import Architecture, new_model, resize_input, write_vocab_files

log = logging.getLogger(__name__)

INPUT_SIZE = ("image_size", "patch_size")

def read_captions(root: Path) -> dict[str, list[str]]:
    """Captions of each image in root/captions.csv, keyed by the image's path relative to root."""
    path = root / "captions.csv"
    if not path.is_file():
        raise TrainingDataError(f"{path} not found: a training folder needs captions.csv with columns image,caption "
                         "(or pass --synthetic N to generate one)")
    captions: dict[str, list[str]] = {}
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"image", "caption"} <= set(reader.fieldnames or ()):
            raise TrainingDataError(f"{path} has columns {reader.fieldnames}; it needs image and caption")
        for row in reader:
            captions.setdefault(row["image"], []).append(row["caption"])
    return captions


def all_captions(root: Path) -> list[str]:
    return [caption for captions in read_captions(root).values() for caption in captions]


class CaptionedImages(Dataset):
    """Images with one of their captions, drawn at random each time an image is read.

    With `edited`, each item also holds a light edit of the image (lib/data/variants.random_edit), the
    positive of the image-to-image term; without it, an empty tensor in its place.
    """

    def __init__(self, root: Path, transform: ClipTransform, edited: bool = False) -> None:
        self.root = root
        self.transform = transform
        self.edited = edited
        by_image = read_captions(root)
        self.paths = list(by_image)
        self.captions = [by_image[p] for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, torch.Tensor]:
        image = open_image(self.root / self.paths[i])
        edit = (torch.from_numpy(self.transform(random_edit(image, random.Random(random.getrandbits(32)))))
                if self.edited else torch.zeros(0))
        return torch.from_numpy(self.transform(image)), random.choice(self.captions[i]), edit


def image_features(model: Any, pixels: torch.Tensor) -> torch.Tensor:
    return model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)


def clip_loss(model: Any, pixels: torch.Tensor, tokens: dict[str, torch.Tensor], caption_ids: torch.Tensor,
              edits: torch.Tensor | None = None, instance_weight: float = 0.0) -> torch.Tensor:
    """The image-text loss, plus `instance_weight` times the image-to-image loss when edited views are given."""
    with_edits = bool(instance_weight) and edits is not None and edits.numel() > 0
    image = image_features(model, torch.cat([pixels, edits]) if with_edits else pixels)  # type: ignore[list-item]
    image, edited = image[:len(pixels)], image[len(pixels):]
    text = model.text_projection(model.text_model(input_ids=tokens["input_ids"],
                                                  attention_mask=tokens["attention_mask"]).pooler_output)
    loss = contrastive_loss(image, text, model.logit_scale, caption_ids)
    if with_edits:
        loss = loss + instance_weight * instance_loss(image, edited)
    return loss


class Collate:
    """Stack pixels, tokenize captions and number the distinct captions of the batch."""

    def __init__(self, tokenizer: Any, context_length: int) -> None:
        self.tokenizer = tokenizer
        self.context_length = context_length

    def __call__(self, batch: Sequence[tuple[torch.Tensor, str, torch.Tensor]]
                 ) -> tuple[torch.Tensor, dict, torch.Tensor, torch.Tensor]:
        pixels = torch.stack([pixels for pixels, _, _ in batch])
        edits = torch.stack([edit for _, _, edit in batch])
        captions = [caption.strip().lower() for _, caption, _ in batch]
        numbers = {caption: i for i, caption in enumerate(dict.fromkeys(captions))}
        tokens = self.tokenizer(captions, padding=True, truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        return pixels, dict(tokens), torch.tensor([numbers[c] for c in captions]), edits


def endless(loader: DataLoader) -> Iterator:
    while True:
        yield from loader


def warmup_cosine(warmup: int, total: int) -> Any:
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))
    return factor


def optimiser(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embedding" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-6)


def train_steps(model: Any, loader: DataLoader, steps: int, lr: float, log_path: Path | None = None,
                warmup: int | None = None, instance_weight: float = 0.0, bf16: bool = False) -> list[float]:
    """Run `steps` optimiser steps and return the loss of each; a CSV loss log goes to `log_path`.

    `bf16` runs the forward pass under CPU autocast to bfloat16 (weights and optimiser stay float32):
    1.4x faster per step on an AVX512-BF16 CPU (measured on an AMD EPYC, batch 256), far slower on one without.
    """
    model.train()
    opt = optimiser(model, lr, weight_decay=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine(warmup or max(1, steps // 20), steps))
    losses: list[float] = []
    log_file = open(log_path, "w") if log_path else None
    if log_file:
        log_file.write("step,loss,lr,logit_scale,seconds\n")
    start = time.perf_counter()
    bar = tqdm(total=steps, desc="training", unit="step")
    for step, (pixels, tokens, caption_ids, edits) in zip(range(steps), endless(loader), strict=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = clip_loss(model, pixels, tokens, caption_ids, edits, instance_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        schedule.step()
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        if log_file:
            log_file.write(f"{step},{losses[-1]:.5f},{schedule.get_last_lr()[0]:.6g},"
                           f"{float(model.logit_scale.detach().exp()):.3f},{time.perf_counter() - start:.1f}\n")
            log_file.flush()
    bar.close()
    if log_file:
        log_file.close()
    model.eval()
    return losses


def save_model(out_dir: Path, model: Any, tokenizer: Any, transform: ClipTransform,
               extra_files: Mapping[str, Path] | None = None) -> None:
    """Write the model folder next to its final place, then swap it in, so a reader never sees half of it."""
    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    write_vocab_files(tokenizer, staging)
    transform.save_pretrained(staging)
    for name, path in (extra_files or {}).items():
        shutil.copy2(path, staging / name)
    old = out_dir.with_name(out_dir.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)


def pretrained_model(spec: str) -> tuple[Any, Any, ClipTransform]:
    """An existing model to fine-tune, loaded (fp32, on the CPU) through the same code the service uses."""
    from lib.model.loading import open_checkpoint

    checkpoint = open_checkpoint(spec)
    return checkpoint.model(), checkpoint.tokenizer, checkpoint.transform


def make_loader(data_root: Path, transform: ClipTransform, tokenizer: Any, context_length: int, batch_size: int,
                num_workers: int, seed: int, edited: bool = False) -> DataLoader:
    dataset = CaptionedImages(data_root, transform, edited)
    if len(dataset) < 2:
        raise TrainingDataError(f"{data_root} has {len(dataset)} captioned image(s); "
                                "contrastive training needs at least 2")
    return DataLoader(dataset, batch_size=min(batch_size, len(dataset)), shuffle=True, drop_last=True,
                      num_workers=num_workers, collate_fn=Collate(tokenizer, context_length),
                      persistent_workers=num_workers > 0, generator=torch.Generator().manual_seed(seed))


def make_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__)
    parser.add_argument("out", type=Path, help="model folder to write")
    parser.add_argument("--data", type=Path, required=True, help="folder with captions.csv (image,caption) and images")
    parser.add_argument("--synthetic", type=int, metavar="PER_CLASS",
                        help="first generate the synthetic dataset into --data with this many images per class")
    parser.add_argument("--init", metavar="SPEC",
                        help="fine-tune this model (spec as for --model) instead of a new one")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--vocab-size", type=int, default=600)
    parser.add_argument("--num-workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--instance-weight", type=float, default=0.0,
                        help="weight of the image-to-image term (each image against a light edit of itself, the "
                             "other images of the batch as negatives); 0 leaves it out")
    parser.add_argument("--bf16", action="store_true", help="forward pass under bfloat16 autocast (CPUs with "
                                                                "AVX512-BF16 or AMX)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    for name, default in vars(Architecture()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=int,
                            help=f"new model (default {default}); with --init only --image-size and --patch-size, "
                                 "which resize the input at the same patch grid" if name in INPUT_SIZE else
                                 f"new model only (default {default})")
    return parser


def train(args: argparse.Namespace) -> None:
    random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.synthetic:
        from lib.data.synthetic import generate_dataset

        generate_dataset(args.data, seed=args.seed + 1000, per_class=args.synthetic, captions_per_image=4)
    given = {name: getattr(args, name) for name in vars(Architecture()) if getattr(args, name) is not None}
    if args.init:
        model, tokenizer, transform = pretrained_model(args.init)
        if set(given) - set(INPUT_SIZE):
            raise TrainingDataError(f"--init {args.init} keeps its architecture; only --image-size and --patch-size "
                                    "can change it")
        vision = model.config.vision_config
        if given:
            transform = resize_input(model, given.get("image_size", vision.image_size),
                                     given.get("patch_size", vision.patch_size))
    else:
        model, tokenizer, transform = new_model(all_captions(args.data), Architecture(**given), args.vocab_size)
    context = int(model.config.text_config.max_position_embeddings)
    loader = make_loader(args.data, transform, tokenizer, context, args.batch_size, args.num_workers, args.seed,
                         edited=args.instance_weight > 0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    log_path = args.out.parent / f"{args.out.name}.train_log.csv"
    started = time.perf_counter()
    losses = train_steps(model, loader, args.steps, args.lr, log_path, instance_weight=args.instance_weight,
                         bf16=args.bf16)
    save_model(args.out, model, tokenizer, transform, extra_files={"train_log.csv": log_path})
    log_path.unlink()
    params = sum(p.numel() for p in model.parameters())
    print(f"trained {params / 1e6:.2f}M parameters for {args.steps} steps in {time.perf_counter() - started:.0f} s; "
          f"loss {losses[0]:.3f} -> {sum(losses[-20:]) / len(losses[-20:]):.3f}; saved to {args.out}")


def main(argv: list[str] | None = None) -> None:
    run("train", make_parser(), train, argv)


if __name__ == "__main__":
    main()
