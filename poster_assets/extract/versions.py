"""Which version every stored value carries, and which versions are current.

A value is current when it was made by the version the models folder serves *now* (the
registry's active entry, or its named fallback); nothing else counts, not even a newer value
that failed. ``current_versions`` is the one place that says so: the extractors, embeddings,
indexes, asset checks, ``gc``, search and the dbt models (through the ``current_versions``
table that ``sql_models`` writes before each build) all ask it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from poster_assets.models.hub import Models
    from poster_assets.storage.database import Database

# The layer split's method (``vision.fusion``): the foreground mask, extended by depth where depth
# is strong and agrees, is the subject; the title ink the title; depth bands the rest. Bump the
# suffix when the method changes: every poster's layers are then recomputed.
LAYERS_METHOD = "layers:fused-fg-depth-ink-v1"
EMBEDDINGS_METHOD = "embed-v1"
# What each embedding kind feeds its network; bump when that changes, the vectors change with it.
# v2: the crop made at most 448 px long (``embed.kinds.CROP_MAX_SIDE``), not at full size.
KIND_INPUTS = {"foreground": "fg-crop-v2", "poster": "letterbox-v1"}
PIXELS_SIZE = 16
PIXELS_VERSION = f"pixels-{PIXELS_SIZE}@v1"
SSL_KIND = "ssl"
EMBEDDING_KINDS = ("foreground", "poster", "pixels")
# Every kind a poster can have; ssl only while a trained encoder is current.
ALL_KINDS = (*EMBEDDING_KINDS, SSL_KIND)


def layers_version(depth: str, foreground: str, ocr: str) -> str:
    """Layers change when their method or any input changes; the inputs are also kept per row."""
    inputs = hashlib.sha1(f"{depth}|{foreground}|{ocr}".encode()).hexdigest()[:12]
    return f"{LAYERS_METHOD}+{inputs}"


def kind_versions(efficientnet: str, foreground: str, ssl: str | None = None) -> dict[str, str]:
    """The version stored with each kind's vectors. The foreground and ssl kinds also name the
    mask model: a new segmenter changes the crops, so it re-embeds them (and only them). The
    ssl kind is there only with an ``ssl`` encoder version."""
    versions = {
        "foreground": f"foreground:{KIND_INPUTS['foreground']}+{efficientnet}+mask:{foreground}",
        "poster": f"poster:{KIND_INPUTS['poster']}+{efficientnet}",
        "pixels": PIXELS_VERSION,
    }
    if ssl:
        # The ssl kind embeds the foreground kind's crop with the trained encoder.
        versions[SSL_KIND] = f"{SSL_KIND}:{KIND_INPUTS['foreground']}+{ssl}+mask:{foreground}"
    return versions


def embeddings_version(kinds: Mapping[str, str]) -> str:
    """The ``extractions`` version of ``foreground_embeddings``: it changes when any kind's
    version does, and then only the kinds without a vector at their own version are computed."""
    text = "|".join(f"{k}={kinds[k]}" for k in sorted(kinds))
    return f"{EMBEDDINGS_METHOD}+{hashlib.sha1(text.encode()).hexdigest()[:12]}"


@dataclass(frozen=True)
class CurrentVersions:
    ocr: str
    depth: str
    foreground: str
    layers: str
    kinds: dict[str, str]
    embeddings: str

    def by_asset(self) -> dict[str, str]:
        """Asset name -> the version its ``extractions`` rows must carry to be current."""
        return {
            "ocr_text": self.ocr,
            "depth_maps": self.depth,
            "foreground_masks": self.foreground,
            "layer_masks": self.layers,
            "foreground_embeddings": self.embeddings,
        }


def current_versions(models: Models) -> CurrentVersions:
    """What every per-poster asset is current at, for the models ``models`` serves now."""
    return versions_from_models(
        models.ocr_version(),
        models.depth_version(),
        models.foreground_version(),
        models.efficientnet_version(),
        models.ssl_version(),
    )


def versions_from_models(
    ocr: str, depth: str, foreground: str, efficientnet: str, ssl: str | None = None
) -> CurrentVersions:
    """What every per-poster asset is current at, given the version of each model."""
    kinds = kind_versions(efficientnet, foreground, ssl)
    return CurrentVersions(
        ocr=ocr,
        depth=depth,
        foreground=foreground,
        layers=layers_version(depth, foreground, ocr),
        kinds=kinds,
        embeddings=embeddings_version(kinds),
    )


def record_current_versions(db: Database, current: CurrentVersions) -> None:
    """Replace the ``current_versions`` table (asset, model_version) in one transaction: the dbt
    models read "current" from it, so SQL and Python agree on which values count."""
    with db.transaction() as conn:
        conn.execute("DELETE FROM current_versions")
        conn.executemany(
            "INSERT INTO current_versions VALUES (?, ?, now())",
            [[a, v] for a, v in current.by_asset().items()],
        )
