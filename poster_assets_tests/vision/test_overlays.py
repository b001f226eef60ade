import numpy as np

from poster_assets.vision.layers import split_layers
from poster_assets.vision.overlays import depth_colormap, extraction_panel, layers_colored
from poster_assets.vision.roles import assign_roles


def _planes():
    depth = np.full((300, 200), 0.1, np.float32)
    depth[120:280, 50:150] = 0.6
    depth[20:60, 30:170] = 0.95
    rgb = np.zeros((300, 200, 3), np.uint8)
    rgb[..., 2] = 120
    rgb[120:280, 50:150] = (200, 80, 40)
    rgb[20:60, 30:170] = 250
    return depth, rgb


def test_depth_colormap_is_rgb_and_near_is_brighter():
    d = np.linspace(0, 1, 100, dtype=np.float32).reshape(10, 10)
    out = depth_colormap(d)
    assert out.shape == (10, 10, 3) and out.dtype == np.uint8
    assert out[-1, -1].sum() > out[0, 0].sum()


def test_layers_colored_from_labels_and_layer_infos():
    depth, rgb = _planes()
    split = split_layers(depth, rgb, k=3, superpixels=False)
    by_label = layers_colored(split.labels)
    assert by_label.shape == (300, 200, 3)
    assert len({tuple(c) for c in by_label.reshape(-1, 3)}) == 3
    layers = assign_roles(split, [([30, 20, 170, 60], "TITLE", 0.9)], None)
    by_role = layers_colored(layers)
    assert tuple(by_role[40, 100]) == (230, 40, 40)  # title red


def test_extraction_panel_is_three_tiles_side_by_side():
    depth, rgb = _planes()
    split = split_layers(depth, rgb, k=3, superpixels=False)
    ocr = [([30, 20, 170, 60], "TITLE", 0.9)]
    layers = assign_roles(split, ocr, depth > 0.5)
    panel = extraction_panel(rgb, depth, layers, [30, 20, 170, 60], depth > 0.5, ocr, width=160)
    assert panel.size == (480, 240)
    panel = extraction_panel(rgb, depth, split.labels, None, None, ())
    assert panel.size == (480, 240)
    assert panel.mode == "RGB"
