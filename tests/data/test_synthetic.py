import csv
import hashlib
from pathlib import Path

from PIL import Image

from lib.data.synthetic import BACKGROUNDS, COLOURS, COUNT_WORDS, SHAPES, SIZES, class_names, generate_dataset, plural


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return h.hexdigest()


def test_tiny_imagenet_layout(tiny_dataset):
    root, images = tiny_dataset
    wnids = (root / "wnids.txt").read_text().split()
    assert len(wnids) == len(class_names()) >= 32
    words = dict(line.split("\t") for line in (root / "words.txt").read_text().splitlines())
    assert [words[w] for w in wnids] == class_names()
    for wnid in wnids:
        assert len(list((root / "train" / wnid / "images").glob("*.JPEG"))) == 2
    annotations = (root / "val" / "val_annotations.txt").read_text().splitlines()
    assert len(annotations) == len(wnids)
    first = annotations[0].split("\t")
    assert (root / "val" / "images" / first[0]).is_file() and first[1] in wnids
    with Image.open(images[0].path) as image:
        assert image.size == (96, 96) and image.mode == "RGB"


def test_captions_describe_the_scene(tiny_dataset):
    root, images = tiny_dataset
    vocabulary = {*COLOURS, *SHAPES, *map(plural, SHAPES), *COUNT_WORDS.values(), *SIZES, *BACKGROUNDS}
    rows = list(csv.DictReader(open(root / "captions.csv")))
    assert len(rows) == 3 * (len(images) + len(class_names()))
    by_path = {item.path.relative_to(root).as_posix(): item.scene for item in images}
    for row in rows:
        if row["image"] not in by_path:
            continue
        scene = by_path[row["image"]]
        truth = {scene.colour, scene.shape, plural(scene.shape), COUNT_WORDS[scene.count], scene.size, scene.background}
        mentioned = set(row["caption"].split()) & vocabulary
        assert mentioned and mentioned <= truth, (row, scene)


def test_same_seed_same_files(tmp_path):
    generate_dataset(tmp_path / "a", seed=5, per_class=1)
    generate_dataset(tmp_path / "b", seed=5, per_class=1)
    generate_dataset(tmp_path / "c", seed=6, per_class=1)
    assert digest(tmp_path / "a") == digest(tmp_path / "b") != digest(tmp_path / "c")
    assert (tmp_path / "a" / ".generated").is_file()
