from poster_assets.vision.metrics import mask_iou
from poster_assets.vision.text_ink import text_ink_mask
from poster_assets_tests.vision._posters import text_poster


def test_text_ink_mask_finds_glyphs_in_either_polarity():
    rgb, glyphs, box = text_poster()
    assert mask_iou(text_ink_mask(rgb, [box]), glyphs) > 0.8
    inverted = 255 - rgb
    assert mask_iou(text_ink_mask(inverted, [box]), glyphs) > 0.8
