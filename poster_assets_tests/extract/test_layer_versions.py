"""The layers version names the layer method and changes with it and with every input."""

import pytest

from poster_assets.defs.extract.assets import LAYER_MASKS, poster_extractors
from poster_assets.extract import versions
from poster_assets.extract.versions import LAYERS_METHOD, layers_version

INPUTS = ("depth:heuristic-v1", "fg:grabcut-saliency-v1", "ppocr:det+rec")


def test_the_layers_version_names_the_fusion_method() -> None:
    assert LAYERS_METHOD.startswith("layers:fused-")
    assert layers_version(*INPUTS).startswith(f"{LAYERS_METHOD}+")
    # The asset's code version is the method: a method change marks layer_masks stale in the UI.
    assert poster_extractors.code_versions_by_key[LAYER_MASKS] == LAYERS_METHOD


def test_the_layers_version_changes_with_the_method(monkeypatch: pytest.MonkeyPatch) -> None:
    before = layers_version(*INPUTS)
    monkeypatch.setattr(versions, "LAYERS_METHOD", "layers:kmeans-slic-v2")
    after = layers_version(*INPUTS)
    assert after != before and after.startswith("layers:kmeans-slic-v2+")


@pytest.mark.parametrize("changed", range(3))
def test_the_layers_version_changes_with_every_input(changed: int) -> None:
    other = list(INPUTS)
    other[changed] += "-new"
    assert layers_version(*other) != layers_version(*INPUTS)
