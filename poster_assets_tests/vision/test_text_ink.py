import numpy as np
from scipy import ndimage

from poster_assets.vision.metrics import mask_iou
from poster_assets.vision.text_ink import enclosed_holes, lab_distance, text_ink_mask
from poster_assets_tests.vision._posters import text_poster


def test_text_ink_mask_finds_glyphs_in_either_polarity():
    rgb, glyphs, box = text_poster()
    assert mask_iou(text_ink_mask(rgb, [box]), glyphs) > 0.8
    inverted = 255 - rgb
    assert mask_iou(text_ink_mask(inverted, [box]), glyphs) > 0.8


def test_lab_distance_is_numpys_norm_to_the_last_bit():
    """The channel-by-channel distance gives ``np.linalg.norm(..., axis=2)``'s values exactly, so
    the ink (and every layer cut from it) is what it was with the norm."""
    rng = np.random.default_rng(0)
    lab = rng.uniform(-130, 260, (61, 97, 3)).astype(np.float32)
    for colour in (np.array([50.0, 128.0, 128.0], np.float32), lab[3, 5], np.float64([1e-3, -7.5, 300.25])):
        expected = np.linalg.norm(lab - colour, axis=2)
        got = lab_distance(lab, colour)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)


def test_enclosed_holes_are_scipys_filled_holes():
    """One flood fill finds what ``ndimage.binary_fill_holes`` fills (4-connected background),
    holes touching the border or joined to it diagonally only included."""
    rng = np.random.default_rng(1)
    masks = [rng.random((40, 70)) < p for p in (0.3, 0.5, 0.7)]
    ring = np.zeros((30, 30), bool)
    ring[5:25, 5:25], ring[8:22, 8:22] = True, False  # an "O": its counter is a hole
    ring[0:3, 0:3] = True
    diagonal = np.zeros((9, 9), bool)
    diagonal[2:7, 2:7], diagonal[3:6, 3:6], diagonal[2, 2] = True, False, False
    for mask in [*masks, ring, diagonal, np.zeros((5, 5), bool), np.ones((5, 5), bool)]:
        assert np.array_equal(enclosed_holes(mask), ndimage.binary_fill_holes(mask) & ~mask)
    assert enclosed_holes(ring)[15, 15] and not enclosed_holes(ring)[1, 10]
