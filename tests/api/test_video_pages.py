"""Scenes of videos in the pages (headless Chromium against scripts/api.sh): the play badge with the scene's span,
the viewer playing the video from the scene's start, "Group scenes of a video", "more like this" on a scene,
and the video file by ranges through nginx."""
import pytest
import requests

from tests.api.test_pages import browser, page, shot  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHOT = "image-search-video"
H264 = 'video/mp4; codecs="avc1.42E01E"'


def clock(seconds: float) -> str:
    """As frontend/js/ui.js's clockTime writes a moment: m:ss, h:mm:ss from an hour on."""
    total = max(0, round(seconds))
    hours, minutes, secs = total // 3600, total // 60 % 60, total % 60
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def search(base: str, query: str, **body) -> list[dict]:
    response = requests.post(f"{base}/search", json={"query": query, "dataset": "mixed", "k": 20, **body},
                             timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["results"]


def is_search(request) -> bool:
    return request.method == "POST" and request.url.endswith("/search")


def video_state(page) -> dict:  # noqa: F811
    return page.evaluate("""() => { const v = document.getElementById('viewer-video');
      return {readyState: v.readyState, currentTime: v.currentTime, paused: v.paused, hidden: v.hidden,
              videoWidth: v.videoWidth, error: v.error && v.error.message}; }""")


def badges(page) -> list[tuple[str, str]]:  # noqa: F811
    """(the thumbnail's alt, the badge's text) of each card with a play badge, in order."""
    return page.eval_on_selector_all("#results li", """items => items.filter(i => i.querySelector('.play'))
      .map(i => [i.querySelector('img').alt, i.querySelector('.play').textContent])""")


def test_a_scene_shows_its_span_and_plays_from_its_start(page, video_server):  # noqa: F811
    base, _ = video_server
    hits = search(base, "blue square")
    hit = hits[0]
    assert hit["media"] == "video" and hit["video_url"]
    span = f"{clock(hit['video_start'])}–{clock(hit['video_end'])}"
    assert span.startswith("0:03–")  # the fixture's blue square: from 3 s
    page.goto(f"{base}/image-search.html?q=blue+square&dataset=mixed")
    page.wait_for_selector("#results li:first-child .play")
    assert page.inner_text("#results li:first-child .play") == f"▶ {span}"
    assert f"video scene {span}" in page.get_attribute("#results li:first-child button", "aria-label")
    page.wait_for_function(f"() => document.querySelectorAll('#results li').length === {len(hits)}")
    assert len(badges(page)) == sum(h["media"] == "video" for h in hits) >= 2  # the scenes, not the pictures
    page.click("#results li:first-child button")
    page.wait_for_selector("#viewer[open]")
    page.wait_for_selector("#viewer-video", state="visible")  # sized once its poster or metadata is in
    assert page.is_hidden("#viewer-image")
    assert page.is_hidden("#viewer-boxes") and page.is_hidden("#viewer-all-words-field")
    page.wait_for_function(f"""() => {{ const v = document.getElementById('viewer-video');
      return v.readyState >= 1 && Math.abs(v.currentTime - {hit['video_start']}) <= 1; }}""", timeout=15_000)
    state = video_state(page)
    assert abs(state["currentTime"] - hit["video_start"]) <= 1 and state["error"] is None, state
    assert float(page.get_attribute("#viewer-video", "src").rsplit("#t=", 1)[1]) == hit["video_start"]
    assert "/videos/" in page.get_attribute("#viewer-open", "href")
    assert "/images/" in page.get_attribute("#viewer-video", "poster")
    assert page.inner_text("#viewer-meta").startswith(f"scene {span} of {hit['path']} · ")
    decodes = page.evaluate(f"() => document.getElementById('viewer-video').canPlayType({H264!r})")
    if decodes:
        page.wait_for_function("() => document.getElementById('viewer-video').videoWidth > 0", timeout=15_000)
        # and a frame at the scene's start is decoded (HAVE_CURRENT_DATA, no seek under way)
        page.wait_for_function("() => { const v = document.getElementById('viewer-video');"
                               " return v.readyState >= 2 && !v.seeking; }", timeout=15_000)
        assert video_state(page)["videoWidth"] == hit["width"]
        page.wait_for_timeout(1500)  # the controls' loading spinner ends its animation cycle before it hides
    shot(page, SHOT)
    # Playing, then closing the dialog: the video stops.
    page.evaluate("() => { const v = document.getElementById('viewer-video'); v.muted = true; return v.play(); }")
    page.wait_for_function("() => !document.getElementById('viewer-video').paused")
    page.keyboard.press("Escape")
    page.wait_for_selector("#viewer", state="hidden")
    # The dialog's close event, which pauses the video, is dispatched as a task after the dialog is hidden.
    page.wait_for_function("() => document.getElementById('viewer-video').paused", timeout=5_000)
    if not decodes:
        pytest.skip(f"this Chromium cannot decode H.264 (canPlayType({H264}) is empty): the decode is not checked")


def test_grouping_keeps_one_scene_per_video_in_the_url_and_on_reload(page, video_server):  # noqa: F811
    base, _ = video_server
    plain = search(base, "red circle")
    page.goto(f"{base}/image-search.html?q=red+circle&dataset=mixed")
    page.wait_for_function(f"() => document.querySelectorAll('#results li').length === {len(plain)}")
    assert len(badges(page)) == sum(h["media"] == "video" for h in plain) >= 2
    assert page.is_hidden("#group_videos")  # the filters are collapsed
    page.click("#filters summary")
    with page.expect_response(lambda response: is_search(response.request)) as answered:
        page.check("#group_videos")
    assert answered.value.request.post_data_json["group_videos"] is True
    assert "group_videos=true" in page.url
    grouped = answered.value.json()["results"]
    count = len(grouped)
    assert sum(h["media"] == "video" for h in grouped) == 1 and count < len(plain)  # the best scene, the pictures
    page.wait_for_function(f"() => document.querySelectorAll('#results li').length === {count}")
    paths = [alt for alt, _ in badges(page)]
    assert len(paths) == len(set(paths)) == 1, paths
    with page.expect_request(is_search) as sent:
        page.reload()
    assert sent.value.post_data_json["group_videos"] is True
    page.wait_for_function(f"() => document.querySelectorAll('#results li').length === {count}")
    assert page.is_checked("#group_videos") and page.get_attribute("#filters", "open") is not None
    assert len(badges(page)) == 1
    with page.expect_request(is_search) as sent:
        page.uncheck("#group_videos")
    assert "group_videos" not in sent.value.post_data_json and "group_videos" not in page.url
    page.wait_for_function(f"() => document.querySelectorAll('#results li').length === {len(plain)}")


def test_more_like_a_scene_and_back_to_a_picture(page, video_server):  # noqa: F811
    base, _ = video_server
    # Of the demo model's scenes, the red circle's is nearest to another scene (the blue square, 0.34)
    page.goto(f"{base}/image-search.html?q=red+circle&dataset=mixed")
    page.wait_for_selector("#results li:first-child .play")
    page.click("#results li:first-child button")
    page.wait_for_selector("#viewer[open]")
    scene_id = page.get_attribute("#results li:first-child", "data-id")
    with page.expect_response(lambda response: response.request.url.endswith("/similar")) as answered:
        page.click("#more-like-this")
    assert answered.value.request.post_data_json["image_id"] == int(scene_id)
    first = answered.value.json()["results"][0]
    assert first["media"] == "video"
    page.wait_for_function("() => document.getElementById('results-title').textContent.startsWith('Images like')")
    assert f"like={scene_id}" in page.url
    page.wait_for_selector("#results li:first-child .play")
    assert page.get_attribute("#results li:first-child", "data-id") == str(first["id"])
    assert scene_id not in page.eval_on_selector_all("#results li", "items => items.map(i => i.dataset.id)")
    # A picture after a scene: the image and its words' controls again, no video.
    page.click("#results li:not(:has(.play)) button")
    page.wait_for_selector("#viewer[open]")
    page.wait_for_function("() => document.getElementById('viewer-image').naturalWidth > 0")
    assert page.is_hidden("#viewer-video") and page.is_visible("#viewer-all-words-field")
    assert page.get_attribute("#viewer-boxes", "hidden") is None
    assert not page.inner_text("#viewer-meta").startswith("scene ")
    assert "/images/" in page.get_attribute("#viewer-open", "href")


def test_the_video_is_served_by_ranges_through_nginx(video_server, video_workspace):
    base, _ = video_server
    settings, _ = video_workspace
    hit = next(h for h in search(base, "blue square") if h["media"] == "video")
    whole = (settings.dataset_path / hit["path"]).read_bytes()
    response = requests.get(base + hit["video_url"], headers={"Range": "bytes=0-99"}, timeout=30)
    assert response.status_code == 206, response.text[:300]
    assert response.content == whole[:100]
    assert response.headers["Content-Range"] == f"bytes 0-99/{len(whole)}"
