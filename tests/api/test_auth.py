"""The API key: off by default, every non-public route wants it when set, image links are signed, CORS follows it."""
import dataclasses
import subprocess
import sys
from urllib.parse import parse_qs, urlsplit

import pytest

from api import create_app
from api.security import require_key_beyond_loopback
from lib.errors import SettingsError
from lib.settings import load_settings
from tests.api.test_api import assert_error
from tests.conftest import REPO

KEY = "s3cret-key-of-the-tests"
ALLOWED = "https://photos.example"


@pytest.fixture(scope="module")
def keyed(built_workspace, demo_encoder):
    settings = dataclasses.replace(built_workspace, api_key=KEY, cors_origins=f"{ALLOWED}, https://other.example")
    return create_app(settings, encoder=demo_encoder).test_client()


@pytest.fixture(scope="module")
def open_client(built_workspace, demo_encoder):
    return create_app(built_workspace, encoder=demo_encoder).test_client()


def bearer(key=KEY):
    return {"Authorization": f"Bearer {key}"}


@pytest.mark.parametrize("headers", [{}, bearer("wrong"), bearer(KEY + "x"), {"Authorization": KEY},
                                     {"Authorization": "Basic " + KEY}, bearer("ключ")])
def test_without_the_right_key_nothing_is_answered(keyed, headers):
    for response in (keyed.post("/search", json={"query": "red"}, headers=headers),
                     keyed.get("/indexes", headers=headers), keyed.get("/metrics", headers=headers),
                     keyed.get("/images/1", headers=headers), keyed.post("/api/repos-images", headers=headers)):
        assert_error(response, 401, "needs an API key")
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_with_the_key_everything_works(keyed):
    response = keyed.post("/search", json={"query": "red circle", "k": 2}, headers={"Authorization": f"bearer {KEY}"})
    assert response.status_code == 200 and len(response.json["results"]) == 2
    assert keyed.get("/indexes", headers=bearer()).status_code == 200


def test_public_routes_need_no_key(keyed):
    assert keyed.get("/health").json["status"] == "ok"
    assert keyed.get("/config.json").status_code == 200 and keyed.get("/").status_code == 200
    assert keyed.get("/js/api.js").status_code == 200
    spec = keyed.get("/openapi.json").json
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer",
                                                               "description": "the server's api_key"}
    assert spec["security"] == [{"bearer": []}] and spec["paths"]["/health"]["get"]["security"] == []
    assert {"signed_link": []} in spec["paths"]["/thumbnails/{image_id}"]["get"]["security"]


def test_image_links_are_signed_for_one_image(keyed):
    hit = keyed.post("/search", json={"query": "red circle", "k": 1}, headers=bearer()).json["results"][0]
    assert keyed.get(hit["image_url"]).status_code == 200  # an <img> sends no header
    thumbnail = urlsplit(hit["thumbnail_url"])
    assert keyed.get(f"{thumbnail.path}?{thumbnail.query}&size=32").mimetype == "image/jpeg"
    signature = parse_qs(thumbnail.query)["sig"][0]
    other = hit["id"] % 72 + 1
    assert_error(keyed.get(f"/images/{other}?sig={signature}"), 401, "needs an API key")
    assert_error(keyed.get(f"/images/{hit['id']}?sig={signature[:-1]}0"), 401, "needs an API key")


def test_without_a_key_links_are_plain_and_any_origin_may_call(open_client):
    hit = open_client.post("/search", json={"query": "red", "k": 1}).json["results"][0]
    assert "sig=" not in hit["image_url"] and "security" not in open_client.get("/openapi.json").json
    response = open_client.post("/search", json={"query": "red"}, headers={"Origin": "https://anywhere.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_with_a_key_only_configured_origins_may_call(keyed):
    preflight = keyed.options("/search", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status_code == 200 and preflight.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert "Authorization" in preflight.headers["Access-Control-Allow-Headers"]
    assert preflight.headers["Vary"] == "Origin"
    stranger = keyed.post("/search", json={"query": "red"}, headers={**bearer(), "Origin": "https://evil.example"})
    assert stranger.status_code == 200 and "Access-Control-Allow-Origin" not in stranger.headers


@pytest.mark.parametrize("host, key, refused", [
    ("127.0.0.1", "", False), ("localhost", "", False), ("::1", "", False), ("127.0.0.2", "", False),
    ("0.0.0.0", "", True), ("192.168.1.5", "", True), ("my-host.lan", "", True), ("0.0.0.0", "k", False),
])
def test_a_key_is_required_beyond_loopback(host, key, refused):
    settings = load_settings(environ={}, overrides={"host": host, "api_key": key})
    if refused:
        with pytest.raises(SettingsError, match="needs an API key: set CLIPSEARCH_API_KEY="):
            require_key_beyond_loopback(settings)
    else:
        require_key_beyond_loopback(settings)


def test_the_launcher_refuses_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "api.launch", str(tmp_path)], cwd=REPO, capture_output=True,
                            text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "CLIPSEARCH_HOST": "0.0.0.0"})
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["api.sh: error: listening on 0.0.0.0 needs an API key: set "
                                                  "CLIPSEARCH_API_KEY=<a long random string> (or api_key in the "
                                                  "config file), or listen on 127.0.0.1"]
