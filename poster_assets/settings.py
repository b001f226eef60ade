"""Where poster-assets keeps its files.

Everything lives under one home folder (``POSTER_ASSETS_HOME``, default ``./poster_data``):
the DuckDB file, blob files (originals, thumbnails, depth maps, masks), pulled model
weights, the OpenVINO compile cache and the Dagster instance. Keeping one root makes a
corpus portable and lets the storage resource swap in object storage later.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "POSTER_ASSETS_HOME"
DEFAULT_HOME = "poster_data"


def home_dir() -> Path:
    return Path(os.environ.get(HOME_ENV, DEFAULT_HOME)).expanduser().resolve()


def models_dir(home: Path | None = None) -> Path:
    """Pulled model weights and converted IR files."""
    return (home or home_dir()) / "models"


def openvino_cache_dir(home: Path | None = None) -> Path:
    """OpenVINO's compiled-model cache (``CACHE_DIR``)."""
    return (home or home_dir()) / "models" / "ov_cache"


def dagster_home(home: Path | None = None) -> Path:
    return (home or home_dir()) / "dagster"


def inbox_dir(home: Path | None = None) -> Path:
    """The folder the inbox sensor watches unless ``POSTER_ASSETS_INBOX`` says otherwise."""
    env = os.environ.get("POSTER_ASSETS_INBOX")
    return Path(env).expanduser().resolve() if env else (home or home_dir()) / "inbox"


OFFLINE_ENV = "POSTER_ASSETS_OFFLINE"


def offline() -> bool:
    """True when ``POSTER_ASSETS_OFFLINE`` is set (``1``, ``true``, ``yes``): nothing is pulled;
    the extractors use what is present and the named fallbacks for the rest (tests, CI)."""
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")
