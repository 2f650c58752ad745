"""A record's image/filename can never send a prediction PNG outside the output folder."""

from __future__ import annotations

import os

import numpy as np
import pytest

from core.evaluation.cityscapes_export import PredictionWriter, prediction_filename


@pytest.mark.parametrize(
    ("image_filename", "expected"),
    [
        ("../../escape.png", "escape.png"),
        ("/etc/cron.d/job.jpg", "job.png"),
        ("..\\..\\windows\\evil.png", "evil.png"),
        (b"../../../tmp/bytes_name.png", "bytes_name.png"),
        ("city/../../x_000001_000002_leftImg8bit.png", "x_000001_000002_leftImg8bit.png"),
    ],
)
def test_only_the_base_name_is_kept(image_filename, expected):
    assert prediction_filename(image_filename) == expected


@pytest.mark.parametrize("image_filename", ["", "..", "a/..", "/", "dir/", "bad\0name.png"])
def test_names_without_a_file_are_refused(image_filename):
    with pytest.raises(ValueError, match="cannot name a prediction after the image path"):
        prediction_filename(image_filename)


def test_hostile_names_are_written_inside_the_output_folder(tmp_path):
    output = tmp_path / "deep" / "predictions"
    writer = PredictionWriter(str(output), label_ids=None)
    for index, name in enumerate(["../../escape.png", str(tmp_path / "abs.png"), "..\\win.png"]):
        path = writer.write(name, np.full((2, 3), index, np.int32))
        assert os.path.dirname(path) == str(output)
    # Nothing outside the output folder: the whole tree holds only the three predictions.
    everything = sorted(
        os.path.relpath(os.path.join(root, name), tmp_path)
        for root, _, names in os.walk(tmp_path)
        for name in names
    )
    assert everything == [
        "deep/predictions/abs.png",
        "deep/predictions/escape.png",
        "deep/predictions/win.png",
    ]
