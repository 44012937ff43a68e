"""Freed memory goes back to the system after large requests (malloc_trim), and only then."""
import platform

import pytest
from flask import Flask

from api import memory


@pytest.fixture
def trims(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_malloc_trim", lambda: lambda: calls.append("trim"))
    return calls


def app_with_trim(threshold: int) -> Flask:
    app = Flask(__name__)
    app.post("/")(lambda: "ok")
    memory.install_trim(app, threshold)
    return app


def answered(app: Flask, size: int) -> None:
    """Post a body and let the answer be sent (the server closes it; trim runs then)."""
    app.test_client().post("/", data=b"x" * size).close()


def test_trim_after_large_bodies_only(trims):
    app = app_with_trim(1000)
    answered(app, 999)
    assert trims == []
    answered(app, 1000)
    assert trims == ["trim"]


def test_trim_after_kb_0_turns_it_off(trims):
    answered(app_with_trim(0), 10**6)
    assert trims == []


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_glibc_malloc_trim_is_found():
    assert memory._malloc_trim()() in (0, 1)
