"""The models each extractor prefers, getting them before a run (``poster-assets demo``), and
saying in one line per extractor which model it uses and why."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from poster_assets.models.registry import get_spec
from poster_assets.models.weights import (
    ModelHashError,
    ModelUnavailableError,
    model_status,
    pull,
)

# Extractor asset -> the registry models it prefers (each is pulled when missing). Foreground
# also runs IS-Net's quantized export or U²-Netp when one of them is present (FOREGROUND_MODELS),
# but the fp16 IS-Net is the one worth pulling: the same masks, the fastest on OpenVINO.
DEFAULT_MODELS: dict[str, tuple[str, ...]] = {
    "ocr_text": ("ppocr-det", "ppocr-cls", "ppocr-rec"),
    "depth_maps": ("midas-small",),
    "foreground_masks": ("isnet-general-medium",),
    "foreground_embeddings": ("efficientnet-lite0",),
}

Outcome = Literal["bundled", "present", "pulled", "offline", "unreachable", "refused"]


@dataclass(frozen=True)
class Fetched:
    """What getting one model came to, and the words for it."""

    name: str
    outcome: Outcome
    detail: str


def fetch_defaults(models_dir: Path, offline: bool, timeout: float = 60.0) -> dict[str, Fetched]:
    """Pull every model of ``DEFAULT_MODELS`` that is missing, unless ``offline``. Never raises
    for a model that cannot be had: its ``Fetched`` says why (the extractor then falls back)."""
    out: dict[str, Fetched] = {}
    for name in dict.fromkeys(n for names in DEFAULT_MODELS.values() for n in names):
        spec = get_spec(name, models_dir)
        status = model_status(spec, models_dir)
        if status.state == "present" and spec.source.startswith("wheel:"):
            package = spec.source.removeprefix("wheel:").split("/", 1)[0]
            out[name] = Fetched(name, "bundled", f"in the {package} wheel")
            continue
        if status.state == "present":
            out[name] = Fetched(name, "present", "pulled before")
            continue
        if offline:
            out[name] = Fetched(name, "offline", f"{name} not pulled: offline")
            continue
        t0 = time.perf_counter()
        try:
            pulled = pull(name, timeout=timeout, models_dir=models_dir)
        except ModelHashError as err:
            out[name] = Fetched(name, "refused", str(err))
        except ModelUnavailableError as err:
            out[name] = Fetched(name, "unreachable", str(err))
        else:
            size = pulled.path.stat().st_size / 1e6
            took = time.perf_counter() - t0
            out[name] = Fetched(name, "pulled", f"pulled now ({size:.0f} MB in {took:.0f} s)")
    return out


_CAUSE = {"offline": "not pulled (offline)", "unreachable": "unreachable", "refused": "refused"}


def in_use_line(
    extractor: str, version: str, neural: bool, fetched: dict[str, Fetched], reason: str = ""
) -> str:
    """One line: the extractor, the version of what it runs, and why that one: pulled now /
    present / bundled in a wheel, or a fallback because its model was not pulled (offline), was
    unreachable or was refused (checksum), or for ``reason``."""
    mine = [fetched[n] for n in DEFAULT_MODELS.get(extractor, ()) if n in fetched]
    chosen = next((f for f in mine if f"{f.name}@" in version), None) if neural else None
    lacking = [f for f in mine if f.outcome in _CAUSE]
    if chosen is not None and chosen.outcome == "pulled":
        why = chosen.detail
    elif chosen is not None:  # bundled in a wheel, or pulled before
        why = f"present ({chosen.detail})"
    else:
        why = "present" if neural else "fallback"
    if lacking:
        # Another network of the chain (U²-Netp instead of IS-Net), or the classical fallback.
        why += (": " if not neural else "; ") + ", ".join(f"{f.name} {_CAUSE[f.outcome]}" for f in lacking)
        if detail := next((f.detail for f in lacking if f.outcome != "offline"), ""):
            why += f" ({_short(detail)})"
    elif not neural and reason:
        why += f": {_short(reason)}"
    return f"{extractor:<22} {version}  {why}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
