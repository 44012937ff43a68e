"""The builders' command lines take relative paths from the current folder, whatever the workspace."""
from PIL import Image

from build_image_index import main as build_images
from build_text_index import main as build_text
from lib.store.catalog import Catalog
from tests.helpers import share_model_cache


def test_relative_paths_are_from_the_current_folder_with_a_workspace_set(tmp_path, model_cache, monkeypatch,
                                                                         capsys):
    workspace = share_model_cache(tmp_path / "ws", model_cache)
    here = tmp_path / "here"
    for name, colour in (("a.png", "red"), ("b.png", "blue")):
        (here / "data" / "mine").mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), colour).save(here / "data" / "mine" / name)
    (here / "colours.txt").write_text("red\nblue\n")
    monkeypatch.chdir(here)
    monkeypatch.setenv("CLIPSEARCH_WORKSPACE", str(workspace))
    build_images(["mine", "data/mine", "--num-workers", "0", "--calibration-images", "0", "--no-progress"])
    build_text(["colours", "colours.txt", "--no-progress"])
    out = capsys.readouterr().out
    assert "mine (flat): 2 added" in out and "colours: 2 entries" in out
    catalog = Catalog.in_folder(workspace / "indexes", readonly=True)
    assert catalog.dataset("mine").root == here / "data" / "mine" and len(catalog.images("mine")) == 2
