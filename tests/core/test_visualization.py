"""Tests of palette colouring and overlays against hand-computed values."""

import numpy as np
import pytest
from PIL import Image

from core import visualization


def test_colorize_uses_the_official_cityscapes_colours():
    labels = np.array([[0, 2, 10], [13, 18, 255]], dtype=np.uint8)
    rgb = visualization.colorize(labels)
    assert rgb.dtype == np.uint8 and rgb.shape == (2, 3, 3)
    # Values from cityscapesScripts helpers/labels.py.
    assert tuple(rgb[0, 0]) == (128, 64, 128)  # road
    assert tuple(rgb[0, 1]) == (70, 70, 70)  # building
    assert tuple(rgb[0, 2]) == (70, 130, 180)  # sky
    assert tuple(rgb[1, 0]) == (0, 0, 142)  # car
    assert tuple(rgb[1, 1]) == (119, 11, 32)  # bicycle
    assert tuple(rgb[1, 2]) == (0, 0, 0)  # ignore


def test_colorize_accepts_a_channel_axis_and_rejects_bad_input():
    labels = np.zeros((2, 2, 1), dtype=np.int32)
    assert visualization.colorize(labels).shape == (2, 2, 3)
    with pytest.raises(ValueError, match="class ids must be in"):
        visualization.colorize(np.array([[300]]))
    with pytest.raises(ValueError, match="label map"):
        visualization.colorize(np.zeros((2, 2, 2)))


def test_blend_is_the_weighted_mean():
    image = np.full((1, 2, 3), 100, dtype=np.uint8)
    labels = np.array([[0, 255]])
    out = visualization.blend(image, labels, alpha=0.25)
    np.testing.assert_array_equal(
        out[0, 0], np.rint([0.75 * 100 + 0.25 * 128, 0.75 * 100 + 16, 0.75 * 100 + 32])
    )
    np.testing.assert_array_equal(out[0, 1], [75, 75, 75])
    with pytest.raises(ValueError, match="differs"):
        visualization.blend(image, np.zeros((2, 2), dtype=np.uint8))


def test_side_by_side_and_atomic_png(tmp_path):
    a = np.zeros((3, 2, 3), dtype=np.uint8)
    b = np.array([[1, 1], [1, 1], [1, 1]])
    panel = visualization.side_by_side(a, b, gap=1)
    assert panel.shape == (3, 5, 3)
    assert (panel[:, 2] == 255).all()
    assert tuple(panel[0, 3]) == (244, 35, 232)  # sidewalk
    path = visualization.save_png(panel, str(tmp_path / "out" / "p.png"))
    np.testing.assert_array_equal(np.asarray(Image.open(path)), panel)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["p.png"]
