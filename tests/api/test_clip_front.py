"""clip-front, the built page that clip-retrieval 2.45.0's wheel ships (front/build/), served from another
origin and driven in Chromium against a live server: its results appear as this server's images."""
import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote

import pytest

from tests.api.test_clip_retrieval import clip_retrieval_folder
from tests.api.test_pages import browser, page, shot  # noqa: F401  (the Chromium fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.slow]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def front(tmp_path, live_server):
    """clip-front's files with a config.json naming the live server, on a port (an origin) of their own."""
    base, _ = live_server
    folder = tmp_path / "front"
    shutil.copytree(clip_retrieval_folder().parent / "front" / "build", folder)
    (folder / "config.json").write_text(json.dumps({"defaultBackend": base, "defaultIndex": "tiny"}))
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", base
    server.shutdown()


def test_clip_front_shows_this_servers_images(page, front):  # noqa: F811 - the fixture imported above
    origin, base = front
    assert origin != base  # another origin: the back answers it through CORS
    page.goto(f"{origin}/?back={quote(base)}&index=tiny&query={quote('red circle')}")
    selector = f"clip-front img[src^='{base}/images/']"
    page.wait_for_selector(selector, timeout=30_000)
    page.wait_for_function(f"""() => {{
        const images = [...document.querySelector('clip-front').shadowRoot.querySelectorAll("img")]
            .filter(i => i.src.startsWith({json.dumps(base + '/images/')}));
        return images.length >= 5 && images.every(i => i.complete && i.naturalWidth > 0);
    }}""", timeout=30_000)
    shot(page, "clip-front")
