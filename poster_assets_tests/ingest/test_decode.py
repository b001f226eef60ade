from pathlib import Path

import numpy as np
import pytest

from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.decode import DecodeError, decode_image


@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("bad")
    return d, write_bad_inputs(d)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero_bytes.jpg", "empty file"),
        ("truncated.jpg", "truncated"),
        ("not_an_image.jpg", "not a recognised image format"),
        ("one_pixel.png", "too small"),
        ("huge.png", "too large"),
    ],
)
def test_bad_files_give_readable_reasons(bad_dir, name: str, reason: str) -> None:
    d, _ = bad_dir
    with pytest.raises(DecodeError, match=reason):
        decode_image((d / name).read_bytes())


def test_exif_orientation_is_applied(bad_dir) -> None:
    d, _ = bad_dir
    decoded = decode_image((d / "exif_rotated.jpg").read_bytes())
    assert (decoded.width, decoded.height) == (300, 450)
    assert decoded.exif_rotated


def test_sixteen_bit_png_keeps_its_tones(bad_dir) -> None:
    d, _ = bad_dir
    decoded = decode_image((d / "sixteen_bit.png").read_bytes())
    arr = decoded.rgb_array()
    assert decoded.source_mode.startswith("I")
    # Pillow's plain convert would clip every value above 255 to white.
    assert 20 < arr.mean() < 235 and arr.std() > 5


def test_alpha_is_composited_on_white(bad_dir) -> None:
    d, _ = bad_dir
    arr = decode_image((d / "rgba.png").read_bytes()).rgb_array()
    # The gradient alpha is 0 at the top-left: fully transparent means white paper.
    assert tuple(arr[0, 0]) == (255, 255, 255)
    assert arr.shape[2] == 3


def test_animated_gif_takes_first_frame(bad_dir) -> None:
    d, _ = bad_dir
    decoded = decode_image((d / "animated.gif").read_bytes())
    assert decoded.frames == 3 and decoded.image.mode == "RGB"


@pytest.mark.parametrize("name", ["cmyk.jpg", "palette.gif", "grayscale.jpg", "poster.webp"])
def test_colour_modes_become_rgb(bad_dir, name: str) -> None:
    d, _ = bad_dir
    decoded = decode_image((d / name).read_bytes())
    assert decoded.image.mode == "RGB"
    assert np.asarray(decoded.image).std() > 5


def _corrupt_idat_crc(data: bytes) -> bytes:
    png = bytearray(data)
    idat = png.index(b"IDAT")
    png[idat + 4 + int.from_bytes(png[idat - 4 : idat], "big")] ^= 0xFF
    return bytes(png)


def test_png_with_a_corrupt_chunk_crc_is_refused(bad_dir) -> None:
    d, _ = bad_dir
    data = (d / "affiche_été_ünïcødé.png").read_bytes()
    decode_image(data)  # the intact file passes
    with pytest.raises(DecodeError, match="integrity check failed"):
        decode_image(_corrupt_idat_crc(data))


def test_integrity_check_passes_valid_posters_and_costs_little(bad_dir) -> None:
    import time

    from poster_assets.ingest.decode import _verify

    d, expected = bad_dir
    ok = [(d / name).read_bytes() for name, status in expected.items() if status == "ok"]
    t0 = time.perf_counter()
    for data in ok:
        decode_image(data)  # includes the check: every valid poster still passes
    full = time.perf_counter() - t0
    t0 = time.perf_counter()
    for data in ok:
        _verify(data)
    check = time.perf_counter() - t0
    assert check < 0.5 * full, (check, full)
