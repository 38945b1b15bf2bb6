"""poseapp.outputs: the check that a run's outputs never overwrite its inputs, nor land where the same
source would read them back (a recursive walk, a glob), on small folders made here (no ../shared)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from poseapp.errors import OutputError
from poseapp.outputs import check_outputs_apart, planned_outputs
from poseapp.sources import open_source


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "data" / "photos"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "sub/b.png"):
        cv2.imwrite(str(folder / name), np.zeros((4, 4, 3), np.uint8))
    return folder


def test_an_annotated_copy_over_its_original_is_refused(photos):
    with pytest.raises(OutputError, match=r"out_dir .* would overwrite the input '.*a\.png'"):
        check_outputs_apart(open_source(photos), photos)
    check_outputs_apart(open_source(photos), photos, media=False)  # --json --no-save: predictions.json only
    check_outputs_apart(open_source(photos), photos.parent)  # a.png lands beside photos/, not over it


def test_a_symlink_or_hard_link_to_the_input_folder_is_the_input_folder(photos, tmp_path):
    (tmp_path / "link").symlink_to(photos)
    with pytest.raises(OutputError, match="would overwrite"):
        check_outputs_apart(open_source(photos), tmp_path / "link")
    other = tmp_path / "other"
    other.mkdir()
    os.link(photos / "a.png", other / "a.png")
    with pytest.raises(OutputError, match="would overwrite"):
        check_outputs_apart(open_source(photos / "a.png"), other)


def test_other_inputs_such_as_a_boxes_file(photos, tmp_path):
    boxes = tmp_path / "out" / "predictions.json"
    boxes.parent.mkdir()
    boxes.write_text("[]")
    with pytest.raises(OutputError, match=r"overwrite the input '.*predictions\.json'"):
        check_outputs_apart(open_source(photos), boxes.parent, media=False, other_inputs=[boxes])


def test_inside_a_recursive_walk(photos):
    with pytest.raises(OutputError, match="which recursive walks"):
        check_outputs_apart(open_source(photos, recursive=True), photos / "sub" / "runs")
    check_outputs_apart(open_source(photos), photos / "runs")  # not walked: its files are never read


@pytest.mark.parametrize("pattern,out,refused", [
    ("{p}/*.png", "{p}", True),
    ("{p}/*.png", "{p}/out", False),          # one level deeper: '*' does not cross '/'
    ("{p}/*/*.png", "{p}/out", True),
    ("{p}/**/*.png", "{p}/deep/er", True),    # '**' reaches everything under the fixed part
    ("{p}/**/*.png", "{d}/elsewhere", False),
    ("{p}/*/*.png", "{d}/link", True),        # a symlink into the pattern's reach
])
def test_glob_patterns(photos, pattern, out, refused):
    (photos.parent / "link").symlink_to(photos / "sub")
    spec = pattern.format(p=photos)
    target = photos.parent.joinpath(out.format(p=photos, d=photos.parent))
    source = open_source(spec)
    if refused:
        with pytest.raises(OutputError, match="would also match|would overwrite"):
            check_outputs_apart(source, target)
    else:
        check_outputs_apart(source, target)


def test_planned_outputs_follow_the_options(photos, tmp_path):
    source = open_source(photos, recursive=True)
    names = sorted(p.relative_to(tmp_path).as_posix() for p in planned_outputs(source, tmp_path))
    assert names == ["a.png", "predictions.json", "sub/b.png"]
    assert planned_outputs(source, tmp_path, media=False) == [tmp_path / "predictions.json"]
