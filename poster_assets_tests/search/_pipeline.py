"""Shared by the search asset and API tests.

The expensive part (EfficientNet IR conversion, segmenting and embedding the posters) happens
once per session into a template home; each test module works on its own copy of it, whose
``models`` folder links to the one converted IR.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from poster_assets.defs.embed.assets import foreground_embeddings
from poster_assets.defs.embed.checks import embedding_norm_check
from poster_assets.defs.extract.assets import FOREGROUND_MASKS, poster_extractors
from poster_assets.defs.ingest.assets import raw_posters
from poster_assets.defs.partitions import BATCHES
from poster_assets.defs.resources import ModelsResource, PosterStore
from poster_assets.defs.search.assets import faiss_index
from poster_assets.defs.search.checks import index_recall_check
from poster_assets.demo import generate_corpus
from poster_assets.ingest.batches import plan_batch

BATCH_ASSETS = [raw_posters, poster_extractors, foreground_embeddings, embedding_norm_check]
# Of the extractors, only the foreground masks the embeddings crop with.
BATCH_SELECTION = [raw_posters.key, FOREGROUND_MASKS, foreground_embeddings.key]
N_POSTERS = 6


@functools.cache
def _scratch() -> Path:
    root = Path(tempfile.mkdtemp(prefix="poster-assets-search-tests-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


def shared_models_dir() -> Path:
    """One models folder for the session: EfficientNet is converted to IR once (~10 s)."""
    path = _scratch() / "models"
    path.mkdir(exist_ok=True)
    return path


def models_for(home: Path) -> ModelsResource:
    return ModelsResource(models_dir=str(home / "models"))


def add_batch(store: PosterStore, instance: dg.DagsterInstance, folder: Path) -> str:
    manifest, _ = plan_batch(store.batches_dir, folder)
    assert manifest is not None
    manifest.save(store.batches_dir)
    instance.add_dynamic_partitions(BATCHES, [manifest.batch])
    return manifest.batch


def register_batches(store: PosterStore, instance: dg.DagsterInstance) -> list[str]:
    """Make a copied home's batches known to a fresh Dagster instance."""
    batches = sorted(json.loads(p.read_text())["batch"] for p in store.batches_dir.glob("*.json"))
    instance.add_dynamic_partitions(BATCHES, batches)
    return batches


def materialize_batch(
    store: PosterStore, instance: dg.DagsterInstance, batch: str
) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        BATCH_ASSETS,
        selection=BATCH_SELECTION,
        partition_key=batch,
        instance=instance,
        resources={"store": store, "models": models_for(store.home_path)},
    )
    assert result.success
    return result


def materialize_index(store: PosterStore, instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        [faiss_index, index_recall_check],
        instance=instance,
        resources={"store": store, "models": models_for(store.home_path)},
    )
    assert result.success
    return result


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    """The metadata of ``asset``'s materialization, as plain values."""
    return {k: v.value for k, v in result.asset_materializations_for_node(asset)[0].metadata.items()}


def check_passed(result: dg.ExecuteInProcessResult, name: str) -> bool:
    (evaluation,) = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation.passed


@dataclass(frozen=True)
class Built:
    home: Path
    batch: str
    embeddings_meta: dict
    index_meta: dict
    norm_check_passed: bool
    recall_check_passed: bool


@functools.cache
def built() -> Built:
    """A template home: N_POSTERS demo posters through raw_posters -> foreground_masks ->
    foreground_embeddings -> faiss_index, in Dagster, with the asset checks."""
    home = _scratch() / "template"
    (home / "dagster").mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir(), target_is_directory=True)
    corpus = _scratch() / "corpus"
    generate_corpus(corpus, n=N_POSTERS, seed=11)
    store = PosterStore(home=str(home))
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        batch = add_batch(store, instance, corpus)
        first = materialize_batch(store, instance, batch)
        index = materialize_index(store, instance)
    shutil.rmtree(home / "dagster")
    return Built(
        home,
        batch,
        materialization(first, "foreground_embeddings"),
        materialization(index, "faiss_index"),
        check_passed(first, "unit_norm_and_expected_dims"),
        check_passed(index, "recall_at_10_vs_exact"),
    )


def copy_home(dest: Path) -> PosterStore:
    """A private copy of the template home (the models folder stays a link to the shared one)."""
    template = built().home
    shutil.copytree(template, dest, symlinks=True)
    (dest / "dagster").mkdir(exist_ok=True)
    return PosterStore(home=str(dest))


def render_posters(out: Path, indices: tuple[int, ...], seed: int = 0) -> Path:
    """Posters ``indices`` of the demo corpus of ``seed`` (the same pixels and encoder settings
    as ``generate_corpus``) with their sidecar, without drawing the posters in between."""
    from PIL import Image

    from poster_assets.demo import plan_poster, render_poster

    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for index in indices:
        rendered = render_poster(plan_poster(seed, index))
        plan, image = rendered.plan, Image.fromarray(rendered.image)
        if plan.format == "JPEG":
            image.save(out / plan.file, "JPEG", quality=90, subsampling=2)
        else:
            image.save(out / plan.file, "PNG", compress_level=1)
        rows.append({"file": plan.file, "title": plan.title, "genres": list(plan.genres), "year": plan.year})
    (out / "sidecar.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def build_home(home: Path, corpus: Path) -> PosterStore:
    """A home of its own for ``corpus`` (models linked to the shared folder), through
    raw_posters -> foreground_masks -> foreground_embeddings -> faiss_index."""
    (home / "dagster").mkdir(parents=True)
    (home / "models").symlink_to(shared_models_dir(), target_is_directory=True)
    store = PosterStore(home=str(home))
    with dg.instance_for_test(temp_dir=str(home / "dagster")) as instance:
        materialize_batch(store, instance, add_batch(store, instance, corpus))
        materialize_index(store, instance)
    shutil.rmtree(home / "dagster")
    return store
