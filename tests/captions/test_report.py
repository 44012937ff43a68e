"""report.html opens offline in Chromium with its summary, its figures and the outliers' thumbnails."""
import pytest

from tests.api.test_pages import browser  # noqa: F401  (the Chromium fixture)
from tests.captions.conftest import read_csv

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_report_opens_offline_and_shows_its_images(browser, scored_run):  # noqa: F811
    summary, out = scored_run
    context = browser.new_context(viewport={"width": 1280, "height": 900}, offline=True)
    page = context.new_page()
    fetched_elsewhere = []

    def only_files(route):
        if route.request.url.startswith(("file:", "data:")):
            route.continue_()
        else:
            fetched_elsewhere.append(route.request.url)
            route.abort()

    page.route("**/*", only_files)
    page.goto((out / "report.html").as_uri())
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=10_000)
    figures = page.eval_on_selector_all("figure img", "imgs => imgs.map(i => [i.getAttribute('src'), i.naturalWidth])")
    assert [src for src, _ in figures] == ["score_histogram.jpg", "image_captions.jpg", "similarity_matrix.jpg"]
    assert all(width > 300 for _, width in figures)
    outliers = read_csv(out / "outliers.csv")
    rows = page.locator("#outliers tr")
    assert rows.count() == 1 + min(50, len(outliers)) and len(outliers) > 0
    thumbnails = page.eval_on_selector_all("#outliers img", "imgs => imgs.map(i => i.naturalWidth)")
    assert len(thumbnails) == min(50, len(outliers)) and all(width > 0 for width in thumbnails)
    assert page.inner_text("#outliers tr:nth-child(2) td:nth-child(2)") == outliers[0]["caption"]
    summary_text = page.inner_text("#summary")
    assert f"{summary['rows']:,}" in summary_text and "wall time" in summary_text and "peak memory" in summary_text
    model_text = page.inner_text("#model")
    assert summary["model"]["weights_sha256"] in model_text and "centre crop 96x96" in model_text
    assert fetched_elsewhere == []
    context.close()
