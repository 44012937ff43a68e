"""The pages in headless Chromium (Debian's, driven by Playwright) against the live server."""
import dataclasses
import random
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from werkzeug.serving import make_server

from api import create_app
from lib.data.synthetic import Scene, draw_scene
from tests.conftest import REPO

playwright_api = pytest.importorskip("playwright.sync_api", reason="install requirements-dev.txt")
pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = REPO / "logs" / "screenshots"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update", "--disable-dev-shm-usage"]


@pytest.fixture(scope="module")
def browser():
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    assert executable, "Chromium is not installed: run scripts/setup_browser.sh"
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    # A full-page shot shows what is below the fold: load the lazy images there first.
    page.eval_on_selector_all("img[loading=lazy]", "imgs => imgs.forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=10_000)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def scene_file(tmp_path: Path, colour: str, shape: str) -> Path:
    path = tmp_path / f"{colour}-{shape}.png"
    draw_scene(Scene(colour, shape, 1, "large", "plain"), random.Random(3)).resize((192, 192)).save(path)
    return path


def loaded_images(page, selector: str) -> int:
    return page.eval_on_selector_all(selector, "imgs => imgs.filter(i => i.complete && i.naturalWidth > 0).length")


def test_search_shows_images_and_keeps_the_query_in_the_url(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html")
    page.fill("#query", "red circle")
    page.press("#query", "Enter")
    page.wait_for_selector("#results li img")
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
    assert loaded_images(page, "#results img") >= 10
    assert page.inner_text("#results li:first-child .class") == "red circle"
    assert "q=red+circle" in page.url
    shot(page, "image-search")
    page.reload()
    page.wait_for_selector("#results li img")
    assert page.input_value("#query") == "red circle"
    # The keyboard opens a result; "more like this" searches with it.
    page.focus("#results li:first-child button")
    page.keyboard.press("Enter")
    page.wait_for_selector("#viewer[open]")
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    page.click("#more-like-this")
    page.wait_for_function("() => document.getElementById('results-title').textContent.startsWith('Images like')")
    assert "like=" in page.url and page.locator("#results li").count() >= 10


def is_search(request) -> bool:
    return request.method == "POST" and request.url.endswith("/search")


def result_ids(page) -> list[str]:
    return page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.id)")


def dataset_size(page, base: str) -> int:
    (dataset,) = page.request.get(f"{base}/indexes").json()["datasets"]
    return dataset["count"]


def test_search_loads_the_next_page_as_the_end_scrolls_into_view(page, live_server):
    base, _ = live_server
    total = dataset_size(page, base)
    offsets = []
    page.on("request", lambda r: offsets.append(r.post_data_json["offset"]) if is_search(r) else None)
    page.goto(f"{base}/image-search.html?q=red+circle&k=10")
    page.wait_for_selector("#results li")
    for _ in range(100):  # scroll as fast as a flick: one request at a time all the same
        if page.is_visible("#end"):
            break
        page.mouse.wheel(0, 5000)
        page.wait_for_timeout(30)
    page.wait_for_selector("#end", state="visible")
    ids = result_ids(page)
    assert len(ids) == len(set(ids)) == total
    assert offsets == list(range(0, total, 10))
    assert page.inner_text("#end") == f"End of results: {total} images." and page.is_hidden("#more")
    assert page.inner_text("#results li:first-child .class") == "red circle"


def test_more_results_button_pages_without_the_observer(page, live_server):
    """The fallback, and the keyboard's way: no IntersectionObserver, so only the button loads more."""
    base, _ = live_server
    page.add_init_script("window.IntersectionObserver = class { observe() {} unobserve() {} };")
    page.goto(f"{base}/image-search.html?q=blue+square&k=10")
    page.wait_for_selector("#more", state="visible")
    assert len(result_ids(page)) == 10
    page.focus("#more")
    page.keyboard.press("Enter")
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 20")
    assert len(set(result_ids(page))) == 20
    assert page.inner_text("#status") == "20 results so far"  # the total is known on the last page
    page.fill("#query", "green star")  # a new query starts again from its first page
    page.press("#query", "Enter")
    page.wait_for_function("() => document.getElementById('results-title').textContent.includes('green star')")
    assert len(result_ids(page)) == 10


def test_a_new_query_drops_the_pages_of_the_old_one(page, live_server):
    """The first query's answer is held back until the second one is on screen: it must not show up there."""
    base, _ = live_server
    held, shown = [], []

    def route(route):
        if route.request.post_data_json["query"] == "red circle":
            held.append(route)
            return
        answer = route.fetch()
        shown.extend(str(hit["id"]) for hit in answer.json()["results"])
        route.fulfill(response=answer)

    page.route("**/search", route)
    page.goto(f"{base}/image-search.html?q=red+circle&k=10")
    page.wait_for_selector("#status.loading")
    page.fill("#query", "blue square")
    page.press("#query", "Enter")
    page.wait_for_selector("#results li")
    assert held
    for old in held:
        old.continue_()
    page.wait_for_timeout(500)
    ids = result_ids(page)
    assert len(ids) >= 10 and ids == shown[:len(ids)]
    assert page.inner_text("#results-title") == "Results for “blue square”"
    page.unroute_all(behavior="ignoreErrors")


def test_relevant_only_sends_the_auto_cutoff_and_shows_its_score(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html?q=red+circle&k=50")
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 50")
    assert page.is_hidden("#cutoff-score")
    with page.expect_request(is_search) as sent:
        page.check("#cutoff")
    assert sent.value.post_data_json["cutoff"] == "auto" and sent.value.post_data_json["offset"] == 0
    page.wait_for_selector("#cutoff-score", state="visible")
    assert re.fullmatch(r"Relevant only: showing results scoring at least -?\d\.\d{3}\.",
                        page.inner_text("#cutoff-score"))
    page.wait_for_selector("#end", state="visible")
    kept = len(result_ids(page))
    assert 0 < kept < 50 and page.inner_text("#end") == f"End of results: {kept} relevant images."
    assert page.inner_text("#status") == f"{kept} of {kept} relevant results"
    assert "cutoff=auto" in page.url
    shot(page, "image-search-relevant")
    page.reload()
    page.wait_for_selector("#cutoff-score", state="visible")
    assert page.is_checked("#cutoff") and len(result_ids(page)) == kept


FILTERS = {"date_from": "2024-01-01", "date_to": "2024-12-31", "folder": "train", "min_width": "32",
           "min_height": "24"}


def test_filters_and_order_are_sent_and_restored_from_the_url(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html?q=red+circle&k=10")
    page.wait_for_selector("#results li")
    assert page.get_attribute("#filters", "open") is None and page.is_hidden("#folder")  # collapsed
    page.click("#filters summary")
    for name, value in FILTERS.items():
        page.fill(f"#{name}", value)
    page.select_option("#sort", "newest")  # a change of order searches again
    with page.expect_request(is_search) as sent:
        page.select_option("#mode", "hybrid")
    wanted = {"query": "red circle", "k": 10, "offset": 0, "dataset": "tiny", "date_from": "2024-01-01",
              "date_to": "2024-12-31", "folder": "train", "min_width": 32, "min_height": 24, "sort": "newest",
              "mode": "hybrid"}
    assert sent.value.post_data_json == wanted
    for name, value in {**FILTERS, "sort": "newest", "mode": "hybrid"}.items():
        assert f"{name}={value}" in page.url
    page.wait_for_selector("#status.empty")  # the tiny dataset's files are dated today: none in 2024
    assert page.locator("#results li").count() == 0
    with page.expect_request(is_search) as sent:
        page.reload()
    assert sent.value.post_data_json == wanted
    assert page.get_attribute("#filters", "open") is not None
    assert {name: page.input_value(f"#{name}") for name in FILTERS} == FILTERS
    assert page.input_value("#sort") == "newest" and page.input_value("#mode") == "hybrid"
    page.select_option("#mode", "text")  # no CLIP scores to cut in text mode
    assert page.is_disabled("#cutoff")


def test_a_refused_filter_is_named_in_the_error_area(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html?q=red&date_from=2025-01-01&date_to=2024-01-01")
    page.wait_for_selector("#status.error")
    assert "date_from" in page.inner_text("#status") and page.locator("#results li").count() == 0
    assert page.is_hidden("#more") and page.is_hidden("#end")


def test_sort_by_relevance_is_sent_and_answered(page, live_server):
    base, _ = live_server
    with page.expect_request(is_search) as sent:
        page.goto(f"{base}/image-search.html?q=yellow+triangle&k=10&sort=relevance")
    assert sent.value.post_data_json["sort"] == "relevance" and "cutoff" not in sent.value.post_data_json
    page.wait_for_selector("#results li")
    assert page.inner_text("#results li:first-child .class") == "yellow triangle"
    assert "sort=" not in page.url or "sort=relevance" in page.url


def test_results_show_their_capture_date(page, live_server):
    """The tiny dataset's files have no EXIF: each card says the file's own date, as the answer gives it."""
    base, _ = live_server
    with page.expect_response(lambda response: is_search(response.request)) as answered:
        page.goto(f"{base}/image-search.html?q=red+circle&k=100")  # the whole tiny dataset: one page
    first = answered.value.json()["results"][0]
    assert first["captured_from"] == "mtime"
    page.wait_for_selector("#end", state="visible")
    assert page.locator("#results li time").count() == 72
    assert page.inner_text("#results li:first-child time") == f"file dated {first['captured_at'][:10]}"
    assert first["captured_at"][:10] in page.get_attribute("#results li:first-child button", "aria-label")


def test_the_page_shows_how_a_composed_query_was_read(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html?q={quote('red circle - circle + square')}")
    page.wait_for_selector("#parsed .chip")
    chips = page.eval_on_selector_all("#parsed .chip", "chips => chips.map(c => c.textContent)")
    assert chips == ["red circle ×1", "− circle ×1", "+ square ×1"]
    assert page.inner_text("#results li:first-child .class") == "red square"
    shot(page, "image-search-composed")
    page.fill("#query", "2:red")
    page.press("#query", "Enter")
    page.wait_for_function("() => document.querySelector('#parsed .chip')?.textContent === 'red ×2'")
    page.fill("#query", "red circle")  # one plain term: nothing to show
    page.press("#query", "Enter")
    page.wait_for_selector("#parsed", state="hidden")
    assert page.is_hidden("#reading")


def test_classification_of_an_upload(page, live_server, tmp_path):
    base, _ = live_server
    page.goto(f"{base}/image-classification.html")
    page.wait_for_selector("#vocab option", state="attached")
    page.set_input_files("#file", str(scene_file(tmp_path, "blue", "square")))
    page.wait_for_selector("#labels li")
    first = page.inner_text("#labels li:first-child .label")
    assert first.startswith("blue square") and first.endswith("%")
    assert page.locator("#labels li").count() == 5
    assert loaded_images(page, "#preview img") == 1
    shot(page, "image-classification")


def test_classification_of_an_indexed_image(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-classification.html")
    page.wait_for_selector("#picker button img")
    page.click("#picker button >> nth=0")
    page.wait_for_selector("#labels li")
    assert page.get_attribute("#picker button >> nth=0", "aria-pressed") == "true"


def test_near_duplicates_page(page, live_server, tmp_path):
    base, _ = live_server
    page.goto(f"{base}/similar-images.html")
    page.wait_for_selector("#dataset option", state="attached")
    page.set_input_files("#file", str(scene_file(tmp_path, "green", "star")))
    page.wait_for_selector("#results li img")
    assert page.locator("#results li").count() == 20
    shot(page, "similar-images")
    page.check("#duplicates")
    page.fill("#threshold", "1")
    page.click("#run")
    page.wait_for_selector("#status.empty")
    assert "No indexed image is that close" in page.inner_text("#status")


def test_duplicates_page_shows_groups_by_tier_with_the_keeper_marked(page, planted_server):
    base, _ = planted_server
    page.goto(f"{base}/duplicates.html")
    page.wait_for_selector("#groups li.dup-group img")
    assert page.locator("#totals tbody tr").count() == 3 and "Space to free" in page.inner_text("#totals")
    groups = page.locator("#groups li.dup-group")
    assert groups.count() == 20 and page.is_visible("#more")  # one page of 20; more to come
    assert page.locator("#groups .member.keep").count() == 20  # one suggested keeper per group
    first = page.inner_text("#groups li.dup-group >> nth=0")
    assert first.startswith("EXACT") and "Keep" in first and "frees" in first and "cosine 1.0000" in first
    page.wait_for_function("() => [...document.querySelectorAll('#groups li:first-child img')].every(i => i.complete)")
    assert loaded_images(page, "#groups li:first-child img") >= 2
    shot(page, "duplicates")
    page.click("#more")
    page.wait_for_function("() => document.querySelectorAll('#groups li.dup-group').length > 20")
    page.select_option("#tier", "near")
    page.wait_for_function("() => document.querySelectorAll('#groups li.dup-group').length > 0 && "
                           "[...document.querySelectorAll('#groups li.dup-group')]"
                           ".every(g => g.dataset.tier === 'near')")
    assert "tier=near" in page.url
    assert "the same picture, edited" in page.inner_text("#groups li.dup-group >> nth=0")
    assert "with pixels within 10 bits" in page.inner_text("#thresholds") and "calibrated for" in page.inner_text(
        "#thresholds")
    page.fill("#near", "0.99")
    page.fill("#similar", "0.85")
    page.select_option("#tier", "similar")
    page.wait_for_function("() => document.querySelectorAll('#groups li[data-tier=similar]').length > 0")
    assert "given here" in page.inner_text("#thresholds")
    page.reload()
    page.wait_for_selector("#groups li[data-tier=similar]")
    assert page.input_value("#tier") == "similar" and page.input_value("#near") == "0.99"


def test_duplicates_page_says_a_small_library_has_default_thresholds(page, live_server):
    """The tiny dataset (108 images) is too small to calibrate on: the page says the defaults are in use."""
    base, _ = live_server
    page.goto(f"{base}/duplicates.html")
    page.wait_for_function("() => document.querySelector('#thresholds').textContent.includes('images searched')")
    assert "defaults: too few images to calibrate on" in page.inner_text("#thresholds")
    assert page.get_attribute("#thresholds", "data-defaults") == "true"


def test_classification_page_shows_the_evaluation_on_the_folders(page, live_server, built_workspace):
    from lib.model.folder_eval import evaluate_folders

    base, _ = live_server
    page.goto(f"{base}/image-classification.html")
    page.wait_for_selector("#evaluation:not([hidden])")
    assert "Not measured on your folders yet" in page.inner_text("#evaluation")
    figures = evaluate_folders(built_workspace.indexes_dir, built_workspace.indexes_text_dir, "tiny", progress=False)
    page.reload()
    page.wait_for_selector("#figures tbody tr")
    row = page.inner_text("#figures tbody tr")
    assert row.startswith("tiny") and "demo (in use)" in row
    assert f"{figures.figures.zero_shot_top1 * 100:.1f} %" in row and f"{figures.figures.map * 100:.1f} %" in row


def test_caption_scoring_heat_map(page, live_server, tmp_path):
    base, _ = live_server
    page.goto(f"{base}/caption-scoring.html")
    page.set_input_files("#files", [str(scene_file(tmp_path, "red", "circle")),
                                    str(scene_file(tmp_path, "yellow", "triangle"))])
    page.fill("#captions", "a red circle\na yellow triangle")
    page.click("#score button[type=submit]")
    page.wait_for_selector("#matrix td")
    assert page.locator("#matrix td").count() == 4 and page.locator("#matrix td.pair").count() == 2
    shot(page, "caption-scoring")


def test_error_state_when_the_api_is_down(page, live_server):
    base, _ = live_server
    page.goto(f"{base}/image-search.html?api=http://127.0.0.1:9")
    page.wait_for_selector("#status.error")
    assert "not reachable" in page.inner_text("#status")


def test_phone_width_has_no_sideways_scroll(browser, live_server):
    base, _ = live_server
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    for name in ("image-search", "image-classification", "similar-images", "duplicates", "caption-scoring"):
        page.goto(f"{base}/{name}.html?q=blue")
        page.wait_for_load_state("networkidle")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), name
    page.goto(f"{base}/image-search.html?q=blue")
    page.wait_for_selector("#results li img")
    page.click("#filters summary")
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "open filters"
    shot(page, "image-search-phone")
    context.close()


def test_inputs_have_labels(page, live_server):
    base, _ = live_server
    for name in ("image-search", "image-classification", "similar-images", "duplicates", "caption-scoring"):
        page.goto(f"{base}/{name}.html")
        page.wait_for_selector("nav.site a")
        unlabeled = page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => !e.labels?.length && !e.getAttribute('aria-label')).map(e => e.id)""")
        assert unlabeled == [], (name, unlabeled)
        assert page.locator("nav.site a[aria-current=page]").count() == 1


@pytest.fixture(scope="module")
def keyed_server(built_workspace, demo_encoder):
    """The app with an API key, served by werkzeug in a thread (the key, not the server, is under test)."""
    app = create_app(dataclasses.replace(built_workspace, api_key="page-key-123"), encoder=demo_encoder)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_pages_send_the_key_given_once_in_the_address(page, keyed_server):
    page.goto(f"{keyed_server}/image-search.html?q=red+circle&key=page-key-123")
    page.wait_for_selector("#results li img")
    page.wait_for_function("() => [...document.querySelectorAll('#results img')].every(i => i.complete)")
    assert loaded_images(page, "#results img") >= 10  # signed image links open without the header
    assert "key=" not in page.url and "q=red+circle" in page.url
    page.goto(f"{keyed_server}/image-classification.html")  # remembered in this browser
    page.wait_for_selector("#picker button img")
    assert page.inner_text("#api-key") == "key ✓"


def test_pages_say_how_to_give_the_key(page, keyed_server):
    page.goto(f"{keyed_server}/image-search.html?q=red")
    page.wait_for_selector("#status.error")
    assert "This API needs a key" in page.inner_text("#status") and "?key=" in page.inner_text("#status")


@pytest.fixture(scope="module")
def signs_server(tmp_path_factory, demo_encoder, model_cache):
    """scripts/api.sh over dataset "signs": drawn shapes and four photographed signs, their words read by OCR."""
    from lib.ingest.image_index import build_image_index
    from lib.settings import load_settings
    from tests.api.test_ocr_api import write_library
    from tests.conftest import serve
    from tests.helpers import share_model_cache

    root = tmp_path_factory.mktemp("page-signs")
    write_library(root)
    workspace = share_model_cache(tmp_path_factory.mktemp("page-signs-ws"), model_cache)
    build_image_index(load_settings(environ={}, overrides=dict(
        workspace=str(workspace), dataset_name="signs", dataset_path=str(root), num_workers=0, ocr_workers=1,
        calibration_images=0, ocr="on")), demo_encoder, progress=False)
    yield from serve(workspace, tmp_path_factory.mktemp("signs-server") / "api.log")


# Each corner of the viewer's polygons on screen, next to where the box's corner should be: the picture's
# pixels scaled into the image as shown (object-fit: contain centres it in its box).
CORNERS = """() => {
  const image = document.getElementById('viewer-image');
  const [, , width, height] = document.getElementById('viewer-boxes').getAttribute('viewBox').split(' ').map(Number);
  const rect = image.getBoundingClientRect();
  const scale = Math.min(rect.width / width, rect.height / height);
  const left = rect.left + (rect.width - width * scale) / 2, top = rect.top + (rect.height - height * scale) / 2;
  return [...document.querySelectorAll('#viewer-boxes polygon.match')].map((polygon) => {
    const matrix = polygon.getScreenCTM();
    return [...polygon.points].map((p) => {
      const shown = new DOMPoint(p.x, p.y).matrixTransform(matrix);
      return {pictureX: p.x, pictureY: p.y, x: shown.x, y: shown.y, wantX: left + p.x * scale,
              wantY: top + p.y * scale, rect: [rect.left, rect.top, rect.right, rect.bottom]};
    });
  });
}"""


def assert_boxes_on_the_image(page, box) -> None:
    (corners,) = page.evaluate(CORNERS)
    assert [[c["pictureX"], c["pictureY"]] for c in corners] == box  # the box as the API gave it
    for corner in corners:
        left, top, right, bottom = corner["rect"]
        assert left <= corner["x"] <= right and top <= corner["y"] <= bottom, corner
        assert abs(corner["x"] - corner["wantX"]) < 1 and abs(corner["y"] - corner["wantY"]) < 1, corner


def test_text_search_shows_the_words_it_matched_and_the_viewer_draws_their_box(page, signs_server):
    base, _ = signs_server
    with page.expect_response(lambda response: is_search(response.request)) as answered:
        page.goto(f"{base}/image-search.html?q=zanzi&mode=text")
    (hit,) = answered.value.json()["results"]
    (match,) = hit["text_matches"]
    page.wait_for_selector("#results li .words")
    assert page.locator("#results li").count() == 1
    assert page.inner_text("#results li .words") == "“ZANZIBAR”"
    assert "reads ZANZIBAR" in page.get_attribute("#results li button", "aria-label")
    page.click("#results li button")
    page.wait_for_selector("#viewer[open]")
    page.wait_for_function("() => document.getElementById('viewer-image').complete && "
                           "document.getElementById('viewer-image').naturalWidth > 0")
    assert page.locator("#viewer-boxes polygon").count() == 1
    assert page.text_content("#viewer-boxes polygon title").startswith("ZANZIBAR (")
    assert page.get_attribute("#viewer-boxes", "viewBox") == f"0 0 {hit['width']} {hit['height']}"
    assert page.inner_text("#viewer-words") == "Matched words: ZANZIBAR"
    assert_boxes_on_the_image(page, match["box"])
    shot(page, "image-search-words")
    page.set_viewport_size({"width": 520, "height": 600})  # smaller: the boxes follow the image
    page.wait_for_function("() => document.getElementById('viewer-image').getBoundingClientRect().width < 500")
    assert_boxes_on_the_image(page, match["box"])
    page.check("#viewer-all-words")  # every word read: here the same one, under the match
    page.wait_for_selector("#viewer-boxes polygon.word")
    assert page.locator("#viewer-boxes polygon.word").count() == 1
    assert page.inner_text("#viewer-words") == "Matched words: ZANZIBAR · Words read: ZANZIBAR"
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")


def test_the_ocr_filter_is_sent_kept_in_the_url_and_restored(page, signs_server):
    base, _ = signs_server
    page.goto(f"{base}/image-search.html?q=red+circle&k=10")
    page.wait_for_selector("#results li")
    page.click("#filters summary")
    page.fill("#ocr", "zanz")
    with page.expect_request(is_search) as sent:
        page.press("#ocr", "Enter")
    assert sent.value.post_data_json["ocr"] == "zanz" and "ocr=zanz" in page.url
    page.wait_for_function("() => document.querySelectorAll('#results li').length === 1")
    assert page.inner_text("#results li .words") == "“ZANZIBAR”"
    with page.expect_request(is_search) as sent:
        page.reload()
    assert sent.value.post_data_json["ocr"] == "zanz"
    assert page.input_value("#ocr") == "zanz" and page.get_attribute("#filters", "open") is not None
    page.wait_for_selector("#results li .words")


def test_a_short_ocr_word_is_refused_in_the_error_area(page, signs_server):
    base, _ = signs_server
    page.goto(f"{base}/image-search.html?q=red&ocr=zz")
    page.wait_for_selector("#status.error")
    message = page.inner_text("#status")
    assert message.startswith("bad query: ocr:") and "three letters" in message
    assert page.locator("#results li").count() == 0 and page.input_value("#ocr") == "zz"
