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


EXECUTOR_ENV = "POSTER_ASSETS_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery")
CELERY_BROKER_ENV = "POSTER_ASSETS_CELERY_BROKER"
DEFAULT_CELERY_BROKER = "redis://127.0.0.1:6379/0"


def executor_name() -> str:
    """How runs execute their steps (``POSTER_ASSETS_EXECUTOR``): ``in_process`` (the default:
    one process per run), ``multiprocess`` (a process per step, steps side by side) or
    ``celery`` (steps as tasks for Celery workers, ``deploy/celery``)."""
    name = os.environ.get(EXECUTOR_ENV, "").strip().lower() or "in_process"
    if name not in EXECUTORS:
        raise ValueError(f"{EXECUTOR_ENV}={name!r}: expected one of {', '.join(EXECUTORS)}")
    return name


def celery_broker() -> str:
    """The Celery broker (and result backend) URL, ``POSTER_ASSETS_CELERY_BROKER``: Redis on
    loopback unless set."""
    return os.environ.get(CELERY_BROKER_ENV, "").strip() or DEFAULT_CELERY_BROKER
