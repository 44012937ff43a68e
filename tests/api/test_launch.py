"""What scripts/api.sh starts: nginx in front when it can, gunicorn alone only where that is safe."""
import json
import logging
import re
import socket
import subprocess
import time

import pytest
import requests

import api.launch
from api.launch import choose_proxy, find_nginx, nginx_config
from lib.errors import SettingsError
from lib.settings import load_settings


def settings(**values):
    return load_settings(environ={}, overrides=values)


def test_nginx_goes_in_front_when_installed():
    assert choose_proxy(settings(), "/usr/sbin/nginx") is True
    assert choose_proxy(settings(host="0.0.0.0", api_key="k"), "/usr/sbin/nginx") is True


def test_without_nginx_loopback_warns_and_other_addresses_are_refused(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose_proxy(settings(), None) is False
    assert "nginx is not installed: serving with gunicorn alone" in caplog.text
    for refused in (settings(host="0.0.0.0", api_key="k"), settings(proxy="nginx")):
        with pytest.raises(SettingsError, match="run scripts/setup_nginx.sh, or set proxy = none"):
            choose_proxy(refused, None)


def test_proxy_none_serves_gunicorn_alone_and_says_so(caplog):
    with caplog.at_level(logging.WARNING):
        assert choose_proxy(settings(proxy="none", host="0.0.0.0", api_key="k"), "/usr/sbin/nginx") is False
    assert "slow clients can tie up gunicorn's threads" in caplog.text


def test_the_nginx_config_carries_the_settings(tmp_path):
    text = nginx_config(settings(port=6123, max_upload_mb=7, client_timeout=4, host="::1"), tmp_path, tmp_path / "s")
    for line in ("listen [::1]:6123;", "client_max_body_size  7m;", "client_body_timeout   4s;",
                 f"server unix:{tmp_path}/s;", "the body is over 7m"):
        assert line in text
    assert not re.search(r"@[{\w]", text)  # every placeholder filled


@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (scripts/setup_nginx.sh)")
def test_nginx_accepts_the_config(tmp_path):
    (tmp_path / "nginx.conf").write_text(nginx_config(settings(), tmp_path, tmp_path / "gunicorn.sock"))
    result = subprocess.run([find_nginx(), "-t", "-q", "-e", "stderr", "-p", str(tmp_path), "-c",
                             str(tmp_path / "nginx.conf")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (scripts/setup_nginx.sh)")
def test_nginx_own_refusals_are_json_with_their_status(tmp_path, monkeypatch):
    """nginx alone, in front of a socket that takes connections and never answers (504), then of none (502)."""
    from tests.conftest import free_port

    monkeypatch.setattr(api.launch, "GUNICORN_TIMEOUT", -9)  # nginx then waits 1 s for an answer
    port, upstream = free_port(), tmp_path / "gunicorn.sock"
    (tmp_path / "nginx.conf").write_text(nginx_config(settings(port=port, max_upload_mb=1), tmp_path, upstream))
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(upstream))
    silent.listen(8)
    nginx = subprocess.Popen([find_nginx(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                             stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.request("TRACE", base, timeout=2)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        answers = {"timeout": requests.get(f"{base}/health", timeout=10)}
        silent.close()
        upstream.unlink()
        answers |= {"down": requests.get(f"{base}/health", timeout=10),
                    "trace": requests.request("TRACE", f"{base}/search", timeout=10),
                    "long": requests.get(f"{base}/{'a' * 9000}", timeout=10),
                    "large": requests.post(f"{base}/search", data=b"x" * (2 * 2**20), timeout=10)}
    finally:
        nginx.terminate()
        nginx.wait(timeout=10)
    statuses = {name: (a.status_code, a.headers["Content-Type"], json.loads(a.text)["error"])
                for name, a in answers.items()}
    assert statuses == {"timeout": (504, "application/json", "gateway timeout"),
                        "down": (502, "application/json", "unavailable"),
                        "trace": (405, "application/json", "method not allowed"),
                        "long": (414, "application/json", "uri too long"),
                        "large": (413, "application/json", "request entity too large")}
    assert answers["trace"].headers["Allow"] == "GET, HEAD, POST, OPTIONS"
    assert set(answers["trace"].json()) == {"error", "detail"}
