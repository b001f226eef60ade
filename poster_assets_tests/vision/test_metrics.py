import numpy as np
import pytest

from poster_assets.vision.metrics import box_iou, character_error_rate, levenshtein, mask_iou, share_inside


def test_levenshtein_known_values():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("flaw", "lawn") == 2


def test_cer_normalises_whitespace_but_not_case():
    assert character_error_rate("THE  LAST\nSTAR", "THE LAST STAR") == 0.0
    assert character_error_rate("the last star", "THE LAST STAR") == pytest.approx(11 / 13)
    assert character_error_rate("THE LAST", "THE LAST STAR") == pytest.approx(5 / 13)
    assert character_error_rate("", "") == 0.0
    assert character_error_rate("x", "") == 1.0


def test_box_iou():
    assert box_iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)
    assert box_iou([0, 0, 10, 10], [10, 10, 20, 20]) == 0.0


def test_mask_iou_and_share_inside_accept_bool_float_and_uint8():
    a = np.zeros((10, 10), bool)
    a[:, :5] = True
    b = np.zeros((10, 10), np.float32)
    b[:, 2:6] = 0.9
    assert mask_iou(a, b) == pytest.approx(30 / 60)
    assert mask_iou(a, (a * 255).astype(np.uint8)) == 1.0
    assert mask_iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    assert share_inside(b, a) == pytest.approx(30 / 40)
    assert share_inside(a, b) == pytest.approx(30 / 50)
