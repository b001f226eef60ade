"""A search result as one self-contained HTML page (thumbnails inlined) a person can open."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from poster_assets.search.api import MATCHES, SearchHit

_THUMB_PX = 256

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; background: #fafafa; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.sub { color: #666; margin-bottom: 20px; font-size: 13px; }
.query { display: flex; gap: 16px; align-items: flex-start; margin-bottom: 24px; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 16px; }
figure { margin: 0; background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px; }
figure img { width: 100%; height: 240px; object-fit: contain; background: #eee; }
figcaption { font-size: 12px; line-height: 1.4; margin-top: 6px; word-break: break-word; }
.score { font-weight: 600; }
.id { color: #888; font-family: monospace; }
.match { display: inline-block; font-size: 11px; font-weight: 600; padding: 1px 6px; border-radius: 8px;
  margin-left: 4px; }
.match-exact { background: #1b5e20; color: #fff; }
.match-near-duplicate { background: #c8e6c9; color: #1b5e20; }
.legend { font-size: 12px; color: #444; margin: -12px 0 20px; }
"""


def _data_uri(image: Image.Image) -> str:
    image = image.convert("RGB")
    image.thumbnail((_THUMB_PX, _THUMB_PX))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _file_uri(path: Path | None) -> str | None:
    if path is None or not Path(path).is_file():
        return None
    try:
        with Image.open(path) as im:
            return _data_uri(im)
    except OSError:
        return None


def _img(uri: str | None, alt: str) -> str:
    if uri is None:
        return f'<div style="height:240px;background:#eee">{html.escape(alt)} (no thumbnail)</div>'
    return f'<img src="{uri}" alt="{html.escape(alt)}">'


def render(
    hits: Sequence[SearchHit],
    heading: str,
    subtitle: str = "",
    query_image: Image.Image | Path | None = None,
) -> str:
    """The page: the query image (if any), then one card per hit with rank, score, how it
    matched (an exact copy or a near-duplicate of the query is marked, and a legend says why it
    ranks first), title, genres, file name and poster id. Nothing outside the page is
    referenced."""
    if isinstance(query_image, Image.Image):
        query_uri: str | None = _data_uri(query_image)
    else:
        query_uri = _file_uri(query_image)
    cards = []
    for rank, hit in enumerate(hits, start=1):
        title = hit.title or hit.file_name or hit.poster_id[:12]
        badge = ""
        if hit.match != "similar":
            why = MATCHES.get(hit.match, "")
            if hit.match == "near-duplicate" and hit.duplicate_similarity is not None:
                why += f" (whole-image similarity {hit.duplicate_similarity:.3f})"
            badge = (
                f'<span class="match match-{html.escape(hit.match)}" title="{html.escape(why)}">'
                f"{html.escape(hit.match)}</span>"
            )
        cards.append(
            "<figure>"
            + _img(_file_uri(hit.thumbnail_path), title)
            + "<figcaption>"
            + f'<span class="score">#{rank} · {hit.score:.3f}</span>{badge}<br>'
            + f"<b>{html.escape(title)}</b><br>"
            + (f"{html.escape(', '.join(hit.genres))}<br>" if hit.genres else "")
            + f"{html.escape(hit.file_name)}<br>"
            + f'<span class="id">{html.escape(hit.poster_id[:16])}</span>'
            + "</figcaption></figure>"
        )
    query = (
        f'<div class="query"><figure style="width:200px">{_img(query_uri, "query")}'
        "<figcaption>query</figcaption></figure></div>"
        if query_uri
        else ""
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(heading)}</title><style>{_STYLE}</style></head><body>"
        f'<h1>{html.escape(heading)}</h1><div class="sub">{html.escape(subtitle)}</div>'
        f'{query}{_legend(hits)}<div class="grid">{"".join(cards) or "<p>No hits.</p>"}</div>'
        "</body></html>\n"
    )


def _legend(hits: Sequence[SearchHit]) -> str:
    """Why the marked hits come first, for the kinds of match on the page."""
    found = [m for m in dict.fromkeys(h.match for h in hits) if m != "similar"]
    if not found:
        return ""
    lines = "; ".join(f"<b>{html.escape(m)}</b>: {html.escape(MATCHES.get(m, ''))}" for m in found)
    return f'<div class="legend">{lines}. These rank before the similar posters, whatever the kind.</div>'


def write(
    path: Path,
    hits: Sequence[SearchHit],
    heading: str,
    subtitle: str = "",
    query_image: Image.Image | Path | None = None,
) -> Path:
    """Write the page to ``path`` (its folder is created) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(hits, heading, subtitle, query_image), encoding="utf-8")
    return path
