import cv2
import numpy as np
import pytest

from poster_assets.vision.layers import (
    ROLE_BACKGROUND,
    ROLE_SUBJECT,
    ROLE_TITLE,
    assign_roles,
    choose_k,
    depth_modes,
    labels_from_layers,
    split_layers,
    text_ink_mask,
    title_box,
)
from poster_assets.vision.metrics import mask_iou, share_inside

H, W = 360, 240
TITLE = [30, 20, 210, 70]


def _three_planes(noise: float = 0.02, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Far backdrop 0.15, a subject ellipse 0.55, a title plane 0.95; plus the subject mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    subject = ((yy - 230) / 100) ** 2 + ((xx - 120) / 70) ** 2 < 1
    depth = np.full((H, W), 0.15, np.float32)
    depth[subject] = 0.55
    depth[TITLE[1] : TITLE[3], TITLE[0] : TITLE[2]] = 0.95
    depth += rng.normal(0, noise, depth.shape).astype(np.float32)
    return np.clip(depth, 0, 1), subject


def _text_poster(seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """A photo-like poster with a title printed on it; returns rgb, glyph mask, title box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([60 + 80 * yy / H, 40 + 30 * xx / W, 90 + 0 * yy], -1).astype(np.float32)
    rgb += rng.normal(0, 6, rgb.shape)
    rgb = np.clip(rgb, 0, 255).astype(np.uint8)
    glyphs = np.zeros((H, W), np.uint8)
    cv2.putText(glyphs, "DUNE", (40, 62), cv2.FONT_HERSHEY_DUPLEX, 1.8, 255, 4, cv2.LINE_AA)
    alpha = glyphs[..., None] / 255.0
    rgb = (rgb * (1 - alpha) + np.array([250, 230, 120]) * alpha).astype(np.uint8)
    ys, xs = np.nonzero(glyphs > 127)
    box = [int(xs.min()) - 3, int(ys.min()) - 3, int(xs.max()) + 4, int(ys.max()) + 4]
    return rgb, glyphs > 127, box


def test_depth_modes_and_k_from_three_planes():
    depth, _ = _three_planes()
    modes = depth_modes(depth)
    assert len(modes) == 3
    assert modes == pytest.approx([0.15, 0.55, 0.95], abs=0.03)
    assert choose_k(depth) == 3


def test_choose_k_defaults_for_unimodal_and_clips_many_modes():
    rng = np.random.default_rng(1)
    unimodal = np.clip(rng.normal(0.5, 0.1, (100, 100)), 0, 1).astype(np.float32)
    assert choose_k(unimodal) == 3
    assert choose_k(unimodal, default=4) == 4
    stripes = np.repeat(np.linspace(0.05, 0.95, 9, dtype=np.float32), 20)[None].repeat(50, axis=0)
    assert len(depth_modes(stripes)) == 9
    assert choose_k(stripes) == 6


def test_split_layers_recovers_planes_ordered_far_to_near():
    depth, subject = _three_planes()
    split = split_layers(depth, superpixels=False)
    assert split.k == 3
    assert split.mean_depths == sorted(split.mean_depths)
    assert mask_iou(split.labels == 1, subject & (depth < 0.8)) > 0.95
    assert np.all(split.labels[TITLE[1] + 2 : TITLE[3] - 2, TITLE[0] + 2 : TITLE[2] - 2] == 2)


def test_split_layers_superpixels_snap_to_image_edges():
    # The depth edge is 6 px off the true object edge; SLIC on the image pulls it back.
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[:, :] = (30, 60, 150)
    rgb[:, 120:] = (220, 180, 40)
    depth = np.full((H, W), 0.2, np.float32)
    depth[:, 126:] = 0.8
    truth = np.zeros((H, W), bool)
    truth[:, 120:] = True
    plain = split_layers(depth, k=2, superpixels=False)
    snapped = split_layers(depth, rgb, k=2, superpixels=True)
    assert mask_iou(snapped.labels == 1, truth) > mask_iou(plain.labels == 1, truth)


def test_title_box_prefers_big_centred_text_and_merges_two_lines():
    shape = (900, 600)
    items = [
        ([150, 100, 450, 170], "THE LAST", 0.95),
        ([170, 180, 430, 250], "HORIZON", 0.9),  # second title line: similar height, below
        ([100, 820, 500, 840], "DIRECTED BY SOMEONE WITH A LONG NAME", 0.99),  # credits
        ([20, 20, 60, 40], "PG", 0.99),
        ([300, 500, 330, 560], "|", 0.5),  # a fleck the OCR read
    ]
    choice = title_box(items, shape)
    assert choice is not None
    assert choice.text == "THE LAST HORIZON"
    assert choice.lines == [[150, 100, 450, 170], [170, 180, 430, 250]]
    assert choice.box == [150, 100, 450, 250]
    polygons = [([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], t, c) for b, t, c in items[2:]]
    assert title_box(polygons, shape).text == "DIRECTED BY SOMEONE WITH A LONG NAME"
    assert title_box([], shape) is None


def test_text_ink_mask_finds_glyphs_in_either_polarity():
    rgb, glyphs, box = _text_poster()
    assert mask_iou(text_ink_mask(rgb, [box]), glyphs) > 0.8
    inverted = 255 - rgb
    assert mask_iou(text_ink_mask(inverted, [box]), glyphs) > 0.8


def test_roles_on_three_planes_with_text_on_the_nearest():
    depth, subject = _three_planes()
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
    rgb, glyphs, box = _text_poster()
    depth, subject = _three_planes()
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
    depth, _ = _three_planes()
    split = split_layers(depth, superpixels=False)
    layers = assign_roles(split, [], None)
    roles = [info.role for info in sorted(layers, key=lambda li: li.depth_rank)]
    assert roles == [ROLE_BACKGROUND, "other", ROLE_SUBJECT]


def test_title_box_joins_word_boxes_on_one_row() -> None:
    # The detector often boxes a title word by word; credits below must stay out.
    items = [
        ([80, 68, 376, 213], "THE", 0.99),
        ([426, 63, 820, 218], "MESA", 0.99),
        ([256, 1239, 642, 1260], "HALCYON PICTURES PRESENTS", 0.99),
    ]
    choice = title_box(items, (1350, 900))
    assert choice is not None and choice.text == "THE MESA"
    assert choice.box == [80, 63, 820, 218]


def test_title_box_joins_left_aligned_lines_but_not_garbled_reads() -> None:
    items = [
        ([0, 560, 599, 641], "ww wwwwwww", 0.58),  # halftone dots read as letters
        ([81, 649, 434, 732], "THE", 0.99),
        ([75, 739, 914, 871], "ORCHARD", 0.99),
    ]
    choice = title_box(items, (1500, 1000))
    assert choice is not None and choice.text == "THE ORCHARD"
