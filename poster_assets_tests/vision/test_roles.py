import numpy as np
import pytest

from poster_assets.vision.layers import split_layers
from poster_assets.vision.metrics import mask_iou, share_inside
from poster_assets.vision.roles import (
    ROLE_BACKGROUND,
    ROLE_SUBJECT,
    ROLE_TITLE,
    assign_roles,
    labels_from_layers,
)
from poster_assets_tests.vision._posters import TITLE, text_poster, three_planes


def test_roles_on_three_planes_with_text_on_the_nearest():
    depth, subject = three_planes()
    split = split_layers(depth, superpixels=False)
    layers = assign_roles(split, [(TITLE, "STARFALL", 0.92), ([80, 330, 160, 345], "credits", 0.9)], subject)
    assert len(layers) == 3  # the depth title layer is used as is, nothing carved
    roles = {info.role: info for info in layers}
    assert roles[ROLE_TITLE].depth_rank == 2
    assert roles[ROLE_SUBJECT].depth_rank == 1
    assert roles[ROLE_BACKGROUND].depth_rank == 0
    assert roles[ROLE_TITLE].bbox == pytest.approx(TITLE, abs=2)
    assert roles[ROLE_BACKGROUND].area_fraction > 0.5
    assert sum(info.area_fraction for info in layers) == pytest.approx(1.0)


def test_roles_carve_the_title_when_depth_does_not_separate_text():
    # A neural-like depth map: the title is painted over the backdrop but has the backdrop's depth.
    rgb, glyphs, box = text_poster()
    depth, subject = three_planes()
    depth[TITLE[1] : TITLE[3], TITLE[0] : TITLE[2]] = 0.15
    split = split_layers(depth, rgb, superpixels=True)
    assert split.k == 2
    layers = assign_roles(split, [(box, "DUNE", 0.9)], subject.astype(np.float32), rgb=rgb)
    assert len(layers) == 3
    title = next(info for info in layers if info.role == ROLE_TITLE)
    assert title.depth_rank == 2  # printed on top: nearest
    assert share_inside(glyphs, title.mask) >= 0.8
    assert share_inside(title.mask, glyphs) >= 0.6  # ink, not the whole box
    labels = labels_from_layers(layers)
    assert np.all(labels[title.mask] == title.index)
    subject_layer = next(info for info in layers if info.role == ROLE_SUBJECT)
    assert mask_iou(subject_layer.mask, subject) > 0.9


def test_roles_without_text_or_foreground():
    depth, _ = three_planes()
    split = split_layers(depth, superpixels=False)
    layers = assign_roles(split, [], None)
    roles = [info.role for info in sorted(layers, key=lambda li: li.depth_rank)]
    assert roles == [ROLE_BACKGROUND, "other", ROLE_SUBJECT]
