"""Phone photos (HEIC, AVIF) are indexed like any image, found by a search, and served to browsers: a HEIC as
a JPEG, since most browsers cannot show HEIC."""
import io
import random

from PIL import Image

from api import create_app
from lib.data.images import register_formats
from lib.data.synthetic import draw_scene, random_scene
from lib.ingest.image_index import build_image_index
from lib.settings import load_settings


def test_heic_and_avif_are_indexed_searched_and_served(tmp_path, demo_encoder):
    register_formats()  # pillow-heif's encoder, to make the test files
    rng = random.Random(5)
    root = tmp_path / "phone"
    files = {"red/circle.heic": ("red", "circle", "HEIF"), "blue/square.avif": ("blue", "square", "AVIF"),
             "green/star.jpg": ("green", "star", "JPEG")}
    for name, (colour, shape, fmt) in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        draw_scene(random_scene(colour, shape, rng), rng).resize((256, 256)).save(root / name, fmt, quality=90)
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path / "ws"), dataset_name="phone",
                                                        dataset_path=str(root), num_workers=2, calibration_images=0))
    report = build_image_index(settings, demo_encoder, progress=False)
    assert report.added == 3 and not report.skipped

    client = create_app(settings, encoder=demo_encoder).test_client()
    hits = client.post("/search", json={"query": "a photo of a red circle", "k": 3}).json["results"]
    assert {hit["path"] for hit in hits} == set(files)
    by_path = {hit["path"]: hit for hit in hits}
    heic, avif = by_path["red/circle.heic"], by_path["blue/square.avif"]
    assert (heic["width"], heic["height"]) == (256, 256)

    served = client.get(heic["image_url"])
    assert served.status_code == 200 and served.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(served.data)).size == (256, 256)
    assert client.get(avif["image_url"]).data == (root / "blue/square.avif").read_bytes()
    for hit in (heic, avif):
        thumb = client.get(hit["thumbnail_url"] + "?size=64")
        assert thumb.mimetype == "image/jpeg" and max(Image.open(io.BytesIO(thumb.data)).size) == 64
