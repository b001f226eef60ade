"""Turn file bytes into an upright RGB image, or a human-readable reason why not.

Every extractor reads posters through ``decode_image`` so that EXIF orientation, colour
modes and frame choice are applied the same way everywhere.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np
import PIL
from PIL import Image, ImageOps, UnidentifiedImageError

# v2: integrity is checked (PNG chunk CRCs and the like), not only decodability.
DECODER_VERSION = f"pillow-{PIL.__version__}/decode-v2"
DEFAULT_MAX_PIXELS = 64_000_000  # 8000 x 8000: far above any real poster scan
# Files above this size are quarantined before a byte is read (neither hashed nor decoded): a
# poster scan is a few MB, 512 MiB is only a stray disk image or video.
DEFAULT_MAX_FILE_BYTES = 512 * 2**20
DEFAULT_MIN_SIDE = 32
_WHITE = (255, 255, 255)


class DecodeError(ValueError):
    """The bytes are not a usable poster; the message is the quarantine reason."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, upright
    format: str
    source_mode: str
    frames: int
    exif_rotated: bool

    @property
    def width(self) -> int:
        return self.image.width

    @property
    def height(self) -> int:
        return self.image.height

    def rgb_array(self) -> np.ndarray:
        return np.asarray(self.image)


def decode_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = DEFAULT_MIN_SIDE
) -> DecodedImage:
    """Decode ``data``; raise ``DecodeError`` with the reason a person should read."""
    if not data:
        raise DecodeError("empty file (0 bytes)")
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; we decide ourselves below.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            raise DecodeError(f"not a recognised image format ({_sniff(data)})") from None
        except Image.DecompressionBombError as exc:
            raise DecodeError(f"too large: {exc}") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise DecodeError(f"unreadable image header: {exc}") from None
    fmt = img.format or "unknown"
    width, height = img.size
    if width * height > max_pixels:
        raise DecodeError(
            f"too large: {width}×{height} = {width * height / 1e6:.1f} MP exceeds the "
            f"{max_pixels / 1e6:.0f} MP limit"
        )
    if min(width, height) < min_side:
        raise DecodeError(f"too small: {width}×{height} px (shortest side must be ≥ {min_side} px)")
    _verify(data)
    frames = getattr(img, "n_frames", 1)
    source_mode = img.mode
    try:
        img.seek(0)
        img.load()
        upright = ImageOps.exif_transpose(img)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"truncated or corrupt image data: {exc}") from None
    exif_rotated = upright.size != img.size or _orientation(img) not in (None, 1)
    return DecodedImage(_to_rgb(upright), fmt, source_mode, frames, exif_rotated)


def _verify(data: bytes) -> None:
    """Pillow's integrity check on a fresh open: for PNG it reads every chunk and checks its
    CRC, which decoding alone does not (a PNG with a corrupt IDAT CRC decodes). Cheap: a CRC
    pass over the bytes, no pixel decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.verify()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error) as exc:
        raise DecodeError(f"corrupt image data (integrity check failed: {exc})") from None


def _orientation(img: Image.Image) -> int | None:
    try:
        return img.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - broken EXIF must not stop a decode that otherwise works
        return None


def _to_rgb(img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        # Pillow's own convert clips 16-bit values at 255; scale the full range down instead.
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, "L").convert("RGB")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Transparent areas become white, like a poster on paper.
        rgba = img.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return img.convert("RGB")


def _sniff(data: bytes) -> str:
    head = data[:512]
    if head.lstrip()[:1] in (b"<",):
        return "looks like HTML/XML text"
    try:
        head.decode("utf-8")
        return "looks like a text file"
    except UnicodeDecodeError:
        return f"{len(data)} bytes, unknown signature {data[:4].hex()}"
