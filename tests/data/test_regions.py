"""Sub-pictures found in collages, screenshots and framed photos; plain photos stay whole."""
import random

import pytest
from PIL import Image, ImageOps

from lib.data.photos import photo_like
from lib.data.regions import Box, RegionLimits, find_regions
from lib.data.synthetic_collages import GROUNDS, free_collage, grid_collage, screenshot

LIMITS = RegionLimits(min_side=96)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [photo_like(480, 360, 40 + i) for i in range(9)]


def matched(found: list[Box], truth: list[Box]) -> int:
    """How many true boxes a found one covers at IoU >= 0.8 (the benchmark's criterion)."""
    return sum(any(f.iou(t) >= 0.8 for f in found) for t in truth)


@pytest.mark.parametrize("columns,count,margin", [(2, 4, True), (2, 4, False), (3, 9, True), (3, 9, False)])
def test_a_grid_collage_splits_into_its_cells(photos, columns, count, margin):
    for gutter, ground in [(8, GROUNDS[0]), (24, GROUNDS[1]), (40, GROUNDS[3])]:
        collage = grid_collage(photos[:count], columns, 180, gutter, ground, margin)
        found = find_regions(collage.image, LIMITS)
        assert len(found) == count and matched(found, collage.boxes) == count, (gutter, ground, found)
        assert [min(range(count), key=lambda n: -f.iou(collage.boxes[n])) for f in found] == list(range(count))


def test_a_free_collage_on_a_plain_or_striped_ground(photos):
    rng = random.Random(2)
    found_parts = all_parts = 0
    for trial in range(6):
        collage = free_collage(photos[trial:trial + 4], rng, striped=trial % 2 == 1)
        found = find_regions(collage.image, LIMITS)
        found_parts += matched(found, collage.boxes)
        all_parts += len(collage.boxes)
        assert len(found) <= len(collage.boxes) + 1
    assert found_parts >= 0.9 * all_parts


def test_a_screenshot_gives_its_photos_not_its_text_or_header(photos):
    rng = random.Random(7)
    for count in (1, 2, 3):
        page = screenshot(photos[:count], rng)
        found = find_regions(page.image, LIMITS)
        assert matched(found, page.boxes) == count and len(found) == count, found


def test_a_framed_photo_is_the_photo_inside_its_frame(photos):
    framed = ImageOps.expand(photos[0], border=30, fill=(250, 250, 250))
    found = find_regions(framed, LIMITS)
    assert len(found) == 1 and found[0].iou(Box(30, 30, 510, 390)) >= 0.95


def test_plain_photos_and_small_pictures_stay_whole(photos):
    for photo in photos + [photo_like(1200, 800, 3), photo_like(600, 900, 4)]:
        assert find_regions(photo, LIMITS) == [Box(0, 0, photo.width, photo.height)]
    tiny = grid_collage(photos[:4], 2, 60, 8, GROUNDS[0]).image  # cells under the model's input
    assert find_regions(tiny, LIMITS) == [Box(0, 0, tiny.width, tiny.height)]
    blank = Image.new("RGB", (500, 400), (255, 255, 255))
    assert find_regions(blank, LIMITS) == [Box(0, 0, 500, 400)]


def test_limits_bound_the_regions(photos):
    collage = grid_collage(photos[:9], 3, 180, 16, GROUNDS[0])
    assert len(find_regions(collage.image, RegionLimits(min_side=96, max_regions=4))) == 4
    assert find_regions(collage.image, RegionLimits(min_side=200)) == [Box(0, 0, *collage.image.size)]
    big_only = RegionLimits(min_side=96, min_fraction=0.2)  # each cell is under a fifth of the collage
    assert find_regions(collage.image, big_only) == [Box(0, 0, *collage.image.size)]


def test_boxes_are_in_the_image_own_pixels_whatever_its_size(photos):
    collage = grid_collage(photos[:4], 2, 900, 40, GROUNDS[2])  # 1880 px: split at a working size, boxes scaled
    found = find_regions(collage.image, LIMITS)
    assert matched(found, collage.boxes) == 4
    assert all(abs(f.x1 - t.x1) <= 6 and abs(f.y0 - t.y0) <= 6 for f, t in zip(found, collage.boxes, strict=True))


def test_other_modes_and_orientations():
    collage = grid_collage([photo_like(300, 300, i) for i in range(4)], 2, 150, 12, GROUNDS[0])
    grey = collage.image.convert("L")
    assert matched(find_regions(grey, LIMITS), collage.boxes) == 4
    rgba = collage.image.convert("RGBA")
    assert matched(find_regions(rgba, LIMITS), collage.boxes) == 4
