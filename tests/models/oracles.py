"""Numpy reference implementations used by the model tests."""

import numpy as np


def numpy_resize_align_corners(images: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Bilinear resize where output corner pixels sit exactly on input corner pixels."""
    _, in_h, in_w, _ = images.shape

    def coords(n_out, n_in):
        if n_out == 1:
            return np.zeros(1)
        return np.arange(n_out) * (n_in - 1) / (n_out - 1)

    ys, xs = coords(out_h, in_h), coords(out_w, in_w)
    y0 = np.floor(ys).astype(int)
    x0 = np.floor(xs).astype(int)
    y1 = np.minimum(y0 + 1, in_h - 1)
    x1 = np.minimum(x0 + 1, in_w - 1)
    wy = (ys - y0)[None, :, None, None]
    wx = (xs - x0)[None, None, :, None]
    top = images[:, y0][:, :, x0] * (1 - wx) + images[:, y0][:, :, x1] * wx
    bottom = images[:, y1][:, :, x0] * (1 - wx) + images[:, y1][:, :, x1] * wx
    return top * (1 - wy) + bottom * wy
