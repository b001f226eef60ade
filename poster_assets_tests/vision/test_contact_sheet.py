import pytest
from PIL import Image

from poster_assets.vision.contact_sheet import caption_text, contact_sheet

NAMES = [
    "new\nline.jpg",
    "cr\rlf.jpg",
    "tab\tand\x1besc.jpg",
    "nul\x00.jpg",
    "line\u2028separator.jpg",
    "bidi\u202eoverride.jpg",
    "latin1_\udce9t\udce9.jpg",  # a name that is not UTF-8, as os.fsdecode gives it
    "affiche_été 🎬.jpg",
    "x" * 5000,
]


@pytest.mark.parametrize("name", NAMES)
def test_any_file_name_can_be_a_caption(name: str) -> None:
    tiles = [Image.new("RGB", (60, 90), (200, 30, 30)), Image.new("L", (90, 60), 128)]
    sheet = contact_sheet(tiles, [name, "plain.jpg"], columns=2, tile_width=128)
    assert sheet.size == (256, 128 * 3 // 2 + 16)
    # The caption strip has ink: something was drawn, on one line.
    strip = sheet.crop((0, 192, 128, 208)).convert("L")
    assert max(strip.getdata()) > 150


def test_caption_text_makes_invisible_characters_visible() -> None:
    assert caption_text("new\nline\t.jpg") == "new\\nline\\t.jpg"
    assert caption_text("esc\x1b") == "esc\\x1b"
    assert caption_text("bidi\u202e") == "bidi\\u202e"
    assert caption_text("affiche_été.jpg") == "affiche_été.jpg"
