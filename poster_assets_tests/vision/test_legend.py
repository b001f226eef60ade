import numpy as np
from PIL import Image

from poster_assets.vision.overlays import layer_legend_items, layers_colored, legend, with_legend
from poster_assets.vision.roles import ROLE_BACKGROUND, ROLE_OTHER, ROLE_SUBJECT, ROLE_TITLE, LayerInfo


def _colours(image: Image.Image) -> set[tuple[int, int, int]]:
    return {tuple(c) for c in np.asarray(image.convert("RGB")).reshape(-1, 3)}


def _layer(role: str, rank: int) -> LayerInfo:
    mask = np.zeros((4, 4), bool)
    mask[rank] = True
    return LayerInfo(rank, rank, 0.25, [0, rank, 4, rank + 1], role, mask=mask, mean_depth=rank / 4)


def test_the_layer_legend_names_every_role_in_the_colour_the_layers_are_drawn_in() -> None:
    items = layer_legend_items()
    labels = " ".join(label for _, _, label in items)
    for role in (ROLE_BACKGROUND, ROLE_SUBJECT, ROLE_TITLE, ROLE_OTHER):
        assert role in labels
    strip = legend(items, 960)
    roles = (ROLE_BACKGROUND, ROLE_SUBJECT, ROLE_OTHER, ROLE_TITLE)
    drawn = layers_colored([_layer(r, i) for i, r in enumerate(roles)])
    for colour in _colours(Image.fromarray(drawn)):
        assert colour in _colours(strip), colour


def test_a_narrow_picture_gets_its_legend_wrapped_under_it() -> None:
    picture = Image.new("RGB", (480, 200), (90, 90, 90))
    wide, narrow = legend(layer_legend_items(), 2000), legend(layer_legend_items(), 480)
    assert narrow.height > wide.height and narrow.width == 480
    out = with_legend(picture, layer_legend_items())
    assert out.size == (480, 200 + narrow.height)
    assert out.getpixel((10, 10)) == (90, 90, 90)
