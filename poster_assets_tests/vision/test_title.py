from poster_assets.vision.title import title_box


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
