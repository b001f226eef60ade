"""Asset checks on the similarity indexes."""

import dagster as dg

from poster_assets.defs.metadata import table
from poster_assets.defs.resources import PosterStore
from poster_assets.defs.search.assets import faiss_index
from poster_assets.embed.vectors import read_ids
from poster_assets.extract.versions import EMBEDDING_KINDS, SSL_KIND
from poster_assets.search.index import IndexLoadError, PosterIndex
from poster_assets.search.sync import RECALL_TARGET, copy_vectors, index_dir, index_recall

RECALL_CHECK = "recall_at_10_vs_exact"


@dg.asset_check(asset=faiss_index, name=RECALL_CHECK, blocking=False)
def index_recall_check(store: PosterStore) -> dg.AssetCheckResult:
    """Each saved index loads, its rows match the table's vectors at its version, and its
    recall@10 against exact search on held-out queries is at least 0.95. Recomputed from the
    files on disk rather than read from the materialization, so it checks what search uses."""
    rows, passed = [], True
    # The ssl index exists only once an encoder has been trained.
    kinds = [*EMBEDDING_KINDS, *([SSL_KIND] if index_dir(store, SSL_KIND).exists() else [])]
    for kind in kinds:
        try:
            index = PosterIndex.load(index_dir(store, kind))
        except IndexLoadError as exc:
            passed = False
            rows.append((kind, 0, "", None, f"cannot load: {exc}"))
            continue
        ids, dim = read_ids(store, kind, index.model_version)
        stored = set(ids)
        missing = sum(1 for pid in index.ids if pid not in stored)
        if missing:
            passed = False
            rows.append((kind, index.count, index.spec.kind, None, f"{missing} ids not in the table"))
            continue
        # The index's rows streamed into a scratch file: at a million posters they are 5 GB.
        vectors = copy_vectors(store, kind, index.model_version, index.ids, dim)
        try:
            recall = index_recall(index, vectors)
        finally:
            vectors.close()
        ok = recall >= RECALL_TARGET
        passed = passed and ok
        rows.append((kind, index.count, index.spec.kind, round(recall, 4), "" if ok else "below target"))
    return dg.AssetCheckResult(
        passed=passed,
        metadata={
            "target": RECALL_TARGET,
            **{f"{kind}_recall_at_10": r for kind, _, _, r, _ in rows if r is not None},
            "indexes": table(["kind", "posters", "type", "recall@10", "problem"], rows),
        },
    )
