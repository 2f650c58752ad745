"""Numpy oracle of the first BN input of ICNet's full branch (``Conv``), for recalibration tests.

``Conv`` is a stride-2 'SAME' 3x3 conv (no bias) of the preprocessed image, which for the ResNet
backbones is the image minus the ImageNet RGB mean; its BN's recalibrated statistics are the
mean and variance of this conv's output over every pixel of every batch.
"""

from __future__ import annotations

import numpy as np

RGB_MEAN = np.array([123.68, 116.779, 103.939])


def conv_same(x: np.ndarray, kernel: np.ndarray, stride: int) -> np.ndarray:
    """TF 'SAME' conv: x [b, H, W, c], kernel [k, k, c, f] -> [b, ceil(H/s), ceil(W/s), f]."""
    k = kernel.shape[0]
    out_h, out_w = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    pads = []
    for size, out in ((x.shape[1], out_h), (x.shape[2], out_w)):
        total = max((out - 1) * stride + k - size, 0)
        pads.append((total // 2, total - total // 2))
    padded = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    y = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(k):
        for j in range(k):
            window = padded[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            y += window @ kernel[i, j]
    return y


def full_branch_statistics(
    images: list[np.ndarray], kernel: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, variance) per channel of ``Conv``'s output over all pixels of all batches.

    Args:
      images: batches float [batch, H, W, 3] in [0, 255].
      kernel: ``Conv/weights`` [3, 3, 3, filters].
    """
    outputs = [conv_same(batch.astype(np.float64) - RGB_MEAN, kernel, 2) for batch in images]
    pixels = np.concatenate([y.reshape(-1, y.shape[-1]) for y in outputs])
    return pixels.mean(axis=0), pixels.var(axis=0)
