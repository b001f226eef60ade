"""A folder of awkward and broken files, each with the status ingest must give it.

Used by the tests and by ``poster-assets bad-inputs OUT`` so a person can watch a folder of
broken files being ingested with every file accounted for.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def _poster(seed: int, size: tuple[int, int] = (300, 450)) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    grad = np.linspace(0, 1, h)[:, None, None] * rng.uniform(60, 200, 3)[None, None, :]
    arr = np.broadcast_to(grad, (h, w, 3)).astype(np.uint8).copy()
    img = Image.fromarray(arr)
    ImageDraw.Draw(img).ellipse((w // 4, h // 4, 3 * w // 4, 3 * h // 4), fill=tuple(rng.integers(0, 255, 3)))
    return img


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def write_bad_inputs(out: Path) -> dict[str, str]:
    """Write the files; return {file name: expected status} ('ok' / 'quarantined' / 'duplicate')."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    expected: dict[str, str] = {}

    def put(name: str, data: bytes, status: str) -> None:
        (out / name).write_bytes(data)
        expected[name] = status

    good_jpeg = _save(_poster(1), "JPEG", quality=90)
    put("good poster.jpg", good_jpeg, "ok")
    put("same bytes again.jpg", good_jpeg, "duplicate")  # sorts after: the first copy is ok
    put("affiche_été_ünïcødé.png", _save(_poster(2), "PNG"), "ok")
    put("zero_bytes.jpg", b"", "quarantined")
    put("truncated.jpg", _save(_poster(3), "JPEG", quality=95)[:3000], "quarantined")
    put("not_an_image.jpg", b"this is a text file pretending to be a JPEG\n" * 10, "quarantined")
    put("one_pixel.png", _save(Image.new("RGB", (1, 1), (255, 0, 0)), "PNG"), "quarantined")
    # 9000 x 8000 = 72 MP: over the 64 MP default limit, yet only a few hundred KB on disk.
    put("huge.png", _save(Image.new("L", (9000, 8000), 0), "PNG"), "quarantined")
    put("cmyk.jpg", _save(_poster(4).convert("CMYK"), "JPEG"), "ok")
    sixteen = (np.asarray(_poster(5).convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    put("sixteen_bit.png", _save(Image.fromarray(sixteen), "PNG"), "ok")
    rgba = _poster(6).convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgba.size))
    put("rgba.png", _save(rgba, "PNG"), "ok")
    put("palette.gif", _save(_poster(7).convert("P", palette=Image.Palette.ADAPTIVE), "GIF"), "ok")
    frames = [_poster(8 + i).convert("P", palette=Image.Palette.ADAPTIVE) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    put("animated.gif", buf.getvalue(), "ok")
    rotated = _poster(11, size=(450, 300))  # stored landscape, EXIF says rotate to portrait
    exif = Image.Exif()
    exif[0x0112] = 6
    put("exif_rotated.jpg", _save(rotated, "JPEG", exif=exif), "ok")
    put("grayscale.jpg", _save(_poster(12).convert("L"), "JPEG"), "ok")
    put("poster.webp", _save(_poster(13), "WEBP"), "ok")
    return expected
