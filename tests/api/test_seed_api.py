"""The seed project's JSON API under /api/, driven with the request shapes of its retrieval.py."""
from pathlib import Path

import pytest

from api import create_app
from lib.ingest.image_index import build_image_index
from lib.settings import load_settings
from tests.api.test_api import assert_error


@pytest.fixture(scope="module")
def client(tmp_path_factory, tiny_dataset, built_workspace, demo_encoder):
    """Two image repos over the same pictures ("alpha" and "beta") and the vocabulary "tiny"."""
    root, _ = tiny_dataset
    workspace = tmp_path_factory.mktemp("seed-workspace")
    for name in ("alpha", "beta"):
        settings = load_settings(environ={}, overrides=dict(workspace=str(workspace), dataset_name=name,
                                                            dataset_path=str(root), num_workers=0))
        build_image_index(settings, demo_encoder, progress=False)
    (workspace / "indexes_text").symlink_to(built_workspace.indexes_text_dir)
    return create_app(settings, encoder=demo_encoder).test_client()


def pairs(response, key="filepaths"):
    assert response.status_code == 200, response.json
    assert list(response.json) == [key]
    return [tuple(pair) for pair in response.json[key]]


def test_repos(client):
    assert client.post("/api/repos-images").json == {"repos": ["alpha", "beta"]}
    assert client.post("/api/repos-text", json={}).json == {"repos": ["tiny"]}
    assert client.get("/api/index").json == {} and client.post("/api/index").json == {}


def test_search_names_images_by_position_across_the_chosen_repos(client):
    found = pairs(client.post("/api/search", json={"repos": ["alpha", "beta"], "query": "red circle",
                                                   "n_neighbours": 4}))
    assert len(found) == 4
    assert all(Path(path).is_file() and "/n90000000/" in path for _, path in found)  # red circles
    # Each picture is in both repos: 72 positions in alpha, then the same 72 again in beta.
    assert {index % 72 for index, _ in found} == {index for index, _ in found if index < 72}
    swapped = pairs(client.post("/api/search", json={"repos": ["beta", "alpha"], "query": "red circle",
                                                     "n_neighbours": 4}))
    assert sorted(path for _, path in swapped) == sorted(path for _, path in found)


def test_similar_leaves_out_the_image_itself(client):
    index, path = pairs(client.post("/api/search", json={"repos": ["alpha"], "query": "green star",
                                                         "n_neighbours": 1}))[0]
    similar = pairs(client.post("/api/similar", json={"repos": ["alpha"], "index": index, "n_neighbours": 5}))
    assert len(similar) == 5 and index not in [i for i, _ in similar]
    # the other picture of its class among them (the demo model ranks look-alikes of layout and ground too:
    # its image-to-image term, models/README.md)
    assert path.split("/")[-3] in [other.split("/")[-3] for _, other in similar]


def test_classify_an_image_by_position(client):
    index, path = pairs(client.post("/api/search", json={"repos": ["beta"], "query": "blue square",
                                                         "n_neighbours": 1}))[0]
    classified = pairs(client.post("/api/classify", json={"repos": ["alpha", "beta"], "txt_repos": ["tiny"],
                                                          "index": 72 + index, "n_neighbours": 3}), "classified")
    assert len(classified) == 3 and classified[0][1] == "blue square" and "/n90000013/" in path
    assert all(0 <= position < 36 for position, _ in classified)


def test_gallery_shows_six_random_images(client):
    shown = pairs(client.post("/api/gallery", json={"mode": {"id": "random"}, "repos": ["alpha"]}))
    assert len(shown) == 6 and len({i for i, _ in shown}) == 6 and all(0 <= i < 72 for i, _ in shown)


@pytest.mark.parametrize("route, body, status, words", [
    ("/api/search", {"repos": ["gamma"], "query": "x", "n_neighbours": 3}, 404, "unknown image repo 'gamma'"),
    ("/api/search", {"repos": [], "query": "x", "n_neighbours": 3}, 400, "repos: List should have at least 1 item"),
    ("/api/similar", {"repos": ["alpha"], "index": 72, "n_neighbours": 3}, 404, "no image at index 72"),
    ("/api/similar", {"repos": ["alpha"], "index": -1, "n_neighbours": 3}, 400, "index: Input should be greater"),
    ("/api/classify", {"repos": ["alpha"], "index": 0, "n_neighbours": 3}, 400, "txt_repos: Field required"),
    ("/api/classify", {"repos": ["alpha"], "txt_repos": ["x"], "index": 0}, 404, "unknown text repo 'x'"),
    ("/api/gallery", {"mode": {"id": 1}}, 400, "repos: Field required"),
])
def test_what_the_seed_would_have_crashed_on_is_a_4xx(client, route, body, status, words):
    assert_error(client.post(route, json=body), status, words)
