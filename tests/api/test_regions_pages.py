"""Regions in the pages (headless Chromium): the similar-images page outlines an upload's regions and lists each
one's matches; a hit that is a region shows it outlined on its picture's card and in the viewer."""
import threading

import pytest
from werkzeug.serving import make_server

from api import create_app
from tests.api.test_pages import browser, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def regions_server(regions_workspace, demo_encoder):
    settings, _ = regions_workspace
    server = make_server("127.0.0.1", 0, create_app(settings, encoder=demo_encoder), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_an_upload_regions_are_outlined_with_their_matches(page, regions_server, regions_workspace):  # noqa: F811
    settings, parts = regions_workspace
    page.goto(f"{regions_server}/similar-images.html")
    page.wait_for_selector("#dataset option", state="attached")
    page.check("#regions")
    page.set_input_files("#file", str(settings.dataset_path / "collage.jpg"))
    page.wait_for_selector("#region-results section li img")
    assert page.locator("#upload-regions svg.regions rect").count() == 4
    boxes = page.eval_on_selector_all("#upload-regions rect", "rs => rs.map(r => ['x', 'y', 'width', 'height']"
                                                               ".map(k => Number(r.getAttribute(k))))")
    for (x, y, w, h), (_, truth) in zip(boxes, parts["collage.jpg"], strict=True):
        assert max(abs(x - truth.x0), abs(y - truth.y0), abs(x + w - truth.x1), abs(y + h - truth.y1)) <= 4
    sections = page.locator("#region-results section")
    assert sections.count() == 4
    # the upload is the indexed collage itself, so each region first finds that collage's own region, then its source
    alts = page.eval_on_selector_all("#region-results section", "ss => ss.map(s => [...s.querySelectorAll('li img')]"
                                                                ".slice(0, 2).map(i => i.alt).join(' '))")
    assert all(f"({name})" in two for two, (name, _) in zip(alts, parts["collage.jpg"], strict=True)), alts
    shown = page.evaluate("() => { const s = document.querySelector('#upload-regions svg').getBoundingClientRect();"
                          " const i = document.querySelector('#upload-regions img').getBoundingClientRect();"
                          " return [s.width - i.width, s.height - i.height]; }")
    assert shown == [0, 0]  # the outlines lie over the picture at whatever size it is shown
    shot(page, "similar-images-regions")


def test_a_region_hit_is_outlined_on_its_card_and_in_the_viewer(page, regions_server, regions_workspace):  # noqa: F811
    settings, _ = regions_workspace
    page.goto(f"{regions_server}/similar-images.html")
    page.wait_for_selector("#dataset option", state="attached")
    page.set_input_files("#file", str(settings.dataset_path / "photo_2.jpg"))
    card = page.locator("#results li", has=page.locator(".region-frame")).first
    card.wait_for()
    assert "a region of the picture" in card.locator("button").get_attribute("aria-label")
    assert "(collage.jpg)" in card.locator("img").get_attribute("alt")
    card.locator("button").click()
    page.wait_for_selector("#viewer[open]")
    page.wait_for_selector("#viewer-boxes polygon.region", state="attached")
    assert page.locator("#viewer-boxes polygon.region").count() == 1
