"""Nothing outside a dataset's folder is indexed or opened: links at scan time, swaps after the build."""
import os
from pathlib import Path

import pytest
from PIL import Image

from lib.data.dataset_files import open_indexed
from lib.data.datasets import scan_dataset
from lib.errors import NotFoundError
from lib.store.records import ImageRecord


def save(path: Path, colour: str = "red", size=(8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


@pytest.fixture
def linked(tmp_path):
    """A folders dataset with links inside it, out of it, in circles and to nothing."""
    root, outside = tmp_path / "photos", tmp_path / "outside"
    save(root / "cats" / "a.png")
    save(root / "dogs" / "b.png")
    save(outside / "o.png")
    save(outside / "deep" / "p.png")
    (root / "cats" / "inside.png").symlink_to("../dogs/b.png")
    (root / "cats" / "out.png").symlink_to(outside / "o.png")
    (root / "cats" / "outdir").symlink_to(outside / "deep", target_is_directory=True)
    (root / "dogs" / "subdir").symlink_to(root / "cats", target_is_directory=True)  # inside: walked
    (root / "dogs" / "loop").symlink_to("..", target_is_directory=True)
    (root / "cats" / "nowhere.png").symlink_to("gone.png")
    os.mkfifo(root / "cats" / "fifo.png")
    (root / "birds").symlink_to(outside, target_is_directory=True)  # a whole class folder out of the dataset
    return root, outside


def test_links_are_followed_only_inside_the_folder(linked):
    root, outside = linked
    layout, files, refused = scan_dataset(root)
    assert layout == "folders"
    assert {f.path: f.target for f in files} == {
        "cats/a.png": "", "cats/inside.png": "", "dogs/b.png": "",
        "dogs/subdir/a.png": "", "dogs/subdir/inside.png": ""}
    assert set(refused) == {"cats/out.png", "cats/outdir", "birds", "dogs/loop", "cats/nowhere.png", "cats/fifo.png",
                            "dogs/subdir/out.png", "dogs/subdir/outdir", "dogs/subdir/nowhere.png",
                            "dogs/subdir/fifo.png"}
    assert refused["cats/out.png"] == (f"a symbolic link to {outside / 'o.png'}, outside the dataset's folder "
                                       "(--follow-links indexes it)")
    assert refused["dogs/loop"] == "a symbolic link to a folder it is in"
    assert refused["cats/nowhere.png"] == "a symbolic link that leads nowhere"
    assert refused["cats/fifo.png"] == "not a regular file"


def test_follow_links_indexes_what_leads_out_and_records_where(linked):
    root, outside = linked
    _, files, refused = scan_dataset(root, follow_links=True)
    targets = {f.path: f.target for f in files}
    assert targets["cats/out.png"] == str(outside / "o.png")
    assert targets["cats/outdir/p.png"] == str(outside / "deep" / "p.png")
    assert targets["birds/o.png"] == str(outside / "o.png") and targets["cats/a.png"] == ""
    assert "cats/out.png" not in refused and "dogs/loop" in refused


def test_a_flat_folder_that_is_itself_a_link_is_scanned(tmp_path):
    save(tmp_path / "real" / "x.png")
    (tmp_path / "alias").symlink_to(tmp_path / "real", target_is_directory=True)
    _, files, refused = scan_dataset(tmp_path / "alias")
    assert [(f.path, f.target) for f in files] == [("x.png", "")] and not refused


def record_of(root: Path, name: str, link_target: str = "") -> ImageRecord:
    found = (root / name).stat()
    return ImageRecord(1, "d", "p", name, "", 8, 8, found.st_size, found.st_mtime_ns, "s" * 64, link_target)


def test_an_indexed_file_is_opened_while_it_is_the_one_indexed(linked):
    root, _ = linked
    with open_indexed(root, record_of(root, "cats/a.png")) as file:
        assert Image.open(file).size == (8, 8)
    with open_indexed(root, record_of(root, "cats/inside.png")) as file:  # a link inside the folder
        assert file.read() == (root / "dogs" / "b.png").read_bytes()


@pytest.mark.parametrize("swap, words", [
    (lambda path, outside: path.symlink_to("/etc/passwd"), "leads outside its dataset's folder"),
    (lambda path, outside: path.symlink_to(outside / "o.png"), "leads outside its dataset's folder"),
    (lambda path, outside: save(path, "blue", (16, 16)), "is not the file that was indexed"),
    (lambda path, outside: os.mkfifo(path), "is not the file that was indexed"),
    (lambda path, outside: None, "is gone from the dataset"),
])
def test_a_file_swapped_after_the_build_is_not_opened(linked, swap, words):
    root, outside = linked
    record = record_of(root, "cats/a.png")
    (root / "cats" / "a.png").unlink()
    swap(root / "cats" / "a.png", outside)
    with pytest.raises(NotFoundError, match=words):
        open_indexed(root, record)


def test_a_folder_swapped_for_a_link_out_is_not_walked_through(linked):
    root, outside = linked
    save(outside / "cats" / "a.png")
    record = record_of(root, "cats/a.png")
    (root / "cats").rename(root / "old-cats")
    (root / "cats").symlink_to(outside / "cats", target_is_directory=True)
    with pytest.raises(NotFoundError, match="leads outside"):
        open_indexed(root, record)


def test_a_path_that_climbs_out_is_refused(tmp_path):
    save(tmp_path / "secret.png")
    (tmp_path / "root").mkdir()
    for name in ("../secret.png", str(tmp_path / "secret.png")):  # as an imported image_path column may hold
        with pytest.raises(NotFoundError, match="leads outside"):
            open_indexed(tmp_path / "root", record_of(tmp_path / "root", name), stamped=False)


def test_a_followed_link_opens_only_what_it_led_to(linked):
    root, outside = linked
    record = record_of(root, "cats/out.png", str(outside / "o.png"))
    with open_indexed(root, record) as file:
        assert file.read() == (outside / "o.png").read_bytes()
    (root / "cats" / "out.png").unlink()
    (root / "cats" / "out.png").symlink_to("/etc/passwd")
    with pytest.raises(NotFoundError, match="leads outside"):
        open_indexed(root, record)
