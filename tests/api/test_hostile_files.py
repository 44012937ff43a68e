"""A dataset as bad luck or an attacker leaves it: links in and out of it, files swapped after the build, and
names with bytes that are not UTF-8, newlines and tabs. Built once, served through the Flask app."""
import io
import os
from pathlib import Path

import pytest
from PIL import Image

from api import create_app
from lib.ingest.image_index import build_image_index
from lib.settings import load_settings
from lib.store.catalog import Catalog
from lib.store.names import shown
from tests.api.test_api import assert_error

NOT_UTF8 = os.fsdecode(b"caf\xe9-\xff.png")
ODD = [NOT_UTF8, "new\nline.png", "tab\there.png", 'quote"and\\back.png']
SWAPS = ["to-passwd.png", "to-outside.png", "resized.png"]


def save(path: Path, colour, size=(40, 40)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, "PNG")


def built(tmp_path: Path, root: Path, encoder, **overrides):
    settings = load_settings(environ={}, overrides=dict(workspace=str(tmp_path / "ws"), dataset_name="h",
                                                        dataset_path=str(root), num_workers=0, calibration_images=0,
                                                        **overrides))
    return settings, build_image_index(settings, encoder, progress=False)


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, demo_encoder):
    base = tmp_path_factory.mktemp("hostile")
    root, outside = base / "photos", base / "outside"
    colours = iter(["red", "green", "blue", "yellow", "purple", "orange", "white", "black", "gray", "pink"])
    for name in ["plain.png", *ODD, *SWAPS]:
        save(root / "odd" / name, next(colours))
    save(root / "dogs" / "dog.png", "brown")
    save(outside / "out.png", "cyan")
    (root / "odd" / "inside-link.png").symlink_to("../dogs/dog.png")
    (root / "odd" / "outside-link.png").symlink_to(outside / "out.png")
    (root / "odd" / os.fsdecode(b"broken\n\xfe.png")).write_bytes(b"not a picture")
    settings, report = built(base, root, demo_encoder)
    app = create_app(settings, encoder=demo_encoder)
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    return root, outside, report, app.test_client(), {r.path: r for r in catalog.images("h")}


def test_every_name_is_indexed_and_searchable(hostile):
    _, _, report, client, records = hostile
    assert report.encoded == len(records) == 1 + len(ODD) + len(SWAPS) + 2  # + the dog and the link inside
    assert set(ODD) < set(f.split("/", 1)[1] for f in records)
    hits = client.post("/search", json={"query": "a photo", "k": 100, "dataset": "h"}).json["results"]
    assert sorted(h["path"] for h in hits) == sorted(shown(p) for p in records)
    assert {"odd/caf\\xe9-\\xff.png", "odd/new\\nline.png", "odd/tab\\there.png"} < {h["path"] for h in hits}


@pytest.mark.parametrize("name", ["plain.png", *ODD])
def test_any_name_is_served_with_a_safe_header(hostile, name):
    root, _, _, client, records = hostile
    record = records[f"odd/{name}"]
    answer = client.get(f"/images/{record.id}")
    assert answer.status_code == 200 and answer.mimetype == "image/png"
    assert answer.data == (root / "odd" / name).read_bytes()
    disposition = answer.headers["Content-Disposition"]
    assert disposition.isascii() and disposition.isprintable() and disposition.startswith("inline; filename=")
    if name != "plain.png":
        assert "filename*=UTF-8''" in disposition
    assert client.get(f"/thumbnails/{record.id}?size=32").status_code == 200


def test_the_report_lists_each_skipped_name_on_its_own_row(hostile):
    _, outside, report, _, records = hostile
    rows = [line.split("\t") for line in report.report_file.read_text(encoding="utf-8").splitlines()]
    assert rows[0] == ["path", "reason"] and all(len(row) == 2 for row in rows)
    listed = dict(rows[1:])
    assert set(listed) == {"odd/broken\\n\\xfe.png", "odd/outside-link.png"}
    assert listed["odd/outside-link.png"] == (f"a symbolic link to {outside / 'out.png'}, outside the dataset's "
                                              "folder (--follow-links indexes it)")
    assert "odd/inside-link.png" in records and "odd/outside-link.png" not in records


@pytest.mark.parametrize("name, swap", [
    ("to-passwd.png", lambda path, outside: path.symlink_to("/etc/passwd")),
    ("to-outside.png", lambda path, outside: path.symlink_to(outside / "out.png")),
    ("resized.png", lambda path, outside: save(path, "blue", (41, 40))),
])
def test_a_file_swapped_after_the_build_is_not_served(hostile, name, swap):
    root, outside, _, client, records = hostile
    record = records[f"odd/{name}"]
    (root / "odd" / name).unlink()
    swap(root / "odd" / name, outside)
    words = "not the file that was indexed" if name == "resized.png" else "leads outside its dataset's folder"
    assert_error(client.get(f"/images/{record.id}"), 404, words)
    assert_error(client.get(f"/thumbnails/{record.id}"), 404, words)


def test_follow_links_indexes_and_serves_a_link_out_and_only_what_it_led_to(tmp_path, demo_encoder):
    root, outside = tmp_path / "photos", tmp_path / "outside"
    save(root / "here.png", "red")
    save(outside / "there.png", "blue")
    (root / "there.png").symlink_to(outside / "there.png")
    settings, report = built(tmp_path, root, demo_encoder, follow_links=True)
    assert report.added == 2 and not report.skipped
    catalog = Catalog.in_folder(settings.indexes_dir, readonly=True)
    record = next(r for r in catalog.images("h") if r.path == "there.png")
    assert record.link_target == str(outside / "there.png")
    client = create_app(settings, encoder=demo_encoder).test_client()
    answer = client.get(f"/images/{record.id}")
    assert answer.status_code == 200 and Image.open(io.BytesIO(answer.data)).size == (40, 40)
    (root / "there.png").unlink()
    (root / "there.png").symlink_to("/etc/passwd")
    assert_error(client.get(f"/images/{record.id}"), 404, "leads outside its dataset's folder")
    _, again = built(tmp_path, root, demo_encoder)  # without --follow-links the link leaves the index
    assert again.removed == 1 and "there.png" in again.skipped
