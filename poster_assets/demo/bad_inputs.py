"""A folder of awkward and broken files, each with the status ingest must give it.

Used by the tests and by ``poster-assets bad-inputs OUT`` so a person can watch a folder of
broken files being ingested with every file accounted for.

``extended=True`` (what ``poster-assets bad-inputs`` writes) adds what is awkward for the file
system and the sidecar rather than for the decoder alone: a FIFO, a socket, a symlink loop, a
dangling symlink, a name that is not UTF-8, names with a newline and control characters, a sparse
file above the file size limit (it takes no disk space), a PNG with a corrupt chunk CRC, two more
empty files and a ``sidecar.jsonl`` with bad values and bad lines (``SIDECAR_ERRORS``). Kinds the
platform cannot make (no FIFOs on Windows, no non-UTF-8 names on macOS) are left out, and so are
absent from the returned expectations.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# What the extended folder's sidecar.jsonl does to each file it names: the field that is dropped.
SIDECAR_ERRORS = {
    "good poster.jpg": "year",
    "cmyk.jpg": "year",
    "grayscale.jpg": "genres",
    "rgba.png": "title",
}
# Its lines that name no usable record (skipped, listed as sidecar problems).
SIDECAR_BAD_LINES = 4
NON_UTF8_NAME = b"latin1_\xe9t\xe9.jpg"  # Latin-1 bytes: "latin1_été.jpg" on a Latin-1 system
NON_UTF8_SHOWN = "latin1_\\xe9t\\xe9.jpg"  # how raw_posters.file_name holds it: the bytes escaped
# Twice ingest's default file size limit (512 MiB). Sparse: it takes no disk space.
HUGE_FILE_BYTES = 2**30


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


def write_bad_inputs(out: Path, extended: bool = False) -> dict[str, str]:
    """Write the files; return {file name: expected status} ('ok' / 'quarantined' / 'duplicate').

    File names are as ``raw_posters.file_name`` holds them (a name that is not UTF-8 with its
    bytes as ``\\xNN``)."""
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
    if extended:
        _write_extended(out, put, expected)
    return expected


def _fresh(path: Path | bytes) -> None:
    """Writing the folder twice works: special files are made anew."""
    if os.path.lexists(path):
        os.unlink(path)


def _write_extended(out: Path, put, expected: dict[str, str]) -> None:
    # Three empty files: none is a poster, so none is the "original" the others duplicate.
    put("zero_bytes copy 1.jpg", b"", "quarantined")
    put("zero_bytes copy 2.jpg", b"", "quarantined")
    png = bytearray(_save(_poster(14), "PNG"))
    idat = png.index(b"IDAT")
    png[idat + 4 + int.from_bytes(png[idat - 4 : idat], "big")] ^= 0xFF  # first byte of IDAT's CRC
    put("bad_crc.png", bytes(png), "quarantined")  # decodes; the CRC check catches it
    put("new\nline.jpg", _save(_poster(20), "JPEG"), "ok")
    put("control\tchars\x1b.png", _save(_poster(21), "PNG"), "ok")
    raw = os.fsencode(out) + b"/" + NON_UTF8_NAME
    with contextlib.suppress(OSError):  # a file system that only takes UTF-8 names (macOS)
        _fresh(raw)
        with open(raw, "wb") as fh:
            fh.write(_save(_poster(22), "JPEG"))
        expected[NON_UTF8_SHOWN] = "ok"
    # A sparse file over the size limit: quarantined by its size, never read.
    _fresh(out / "huge_file.jpg")
    with open(out / "huge_file.jpg", "wb") as fh:
        fh.truncate(HUGE_FILE_BYTES)
    expected["huge_file.jpg"] = "quarantined"
    specials = {
        "fifo.jpg": lambda p: os.mkfifo(p),
        "symlink_loop.jpg": lambda p: os.symlink(p.name, p),
        "dangling_symlink.jpg": lambda p: os.symlink("missing_target.jpg", p),
        "socket.jpg": _make_socket,
    }
    for name, make in specials.items():
        path = out / name
        _fresh(path)
        try:
            make(path)
        except (OSError, AttributeError, NotImplementedError):  # no FIFOs / symlinks / sockets here
            continue
        expected[name] = "quarantined"
    lines = [
        b'{"file": "good poster.jpg", "title": "The Long Night", "genres": ["horror"], "year": 1e999}',
        b'{"file": "cmyk.jpg", "title": "Cyan", "year": 99999999999}',
        b'{"file": "grayscale.jpg", "title": "Grey", "genres": 5, "year": 1961}',
        b'{"file": "rgba.png", "title": "Caf\xe9 (Latin-1, not UTF-8)", "year": 1984}',
        b'{"file": "poster.webp", "title": "Fine", "genres": ["drama", "noir"], "year": 1999}',
        b'["an", "array"]',
        b'"a string"',
        b'{"file": "not json',
        b'{"title": "names no file"}',
    ]
    (out / "sidecar.jsonl").write_bytes(b"\n".join(lines) + b"\n")


def _make_socket(path: Path) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))  # the socket file stays after close
    finally:
        sock.close()
