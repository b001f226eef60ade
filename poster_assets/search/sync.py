"""Keeping each kind's FAISS index in step with its vectors, measuring it, and the
``poster_neighbors`` table made from it (no Dagster here; ``faiss_index`` calls these).

Nothing here holds every vector of a kind in RAM: a rebuild reads the ids first, then copies
the vectors from DuckDB a page of ids at a time into a scratch file under the index folder
(``copy_vectors``) that building, recall and neighbours read a chunk at a time. Past
``SHARD_MAX`` posters a kind is split by poster-id range into shards (``index.shard_of``),
each built by ``build_shard`` on its own, in this process or others, then published together
by one manifest (``index.write_manifest``).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from poster_assets.embed.vectors import iter_stored_vectors, read_ids, read_vectors
from poster_assets.search.index import (
    DEFAULT_MEMORY_BUDGET,
    IndexLoadError,
    IndexMissingError,
    PosterIndex,
    ScratchVectors,
    ShardedIndex,
    VectorSource,
    build_index,
    choose_index_spec,
    choose_shards,
    drop_shards,
    gather_rows,
    recall_at_k,
    shard_folder,
    shard_of,
    write_manifest,
)
from poster_assets.storage.store import HomeStore, Store

log = logging.getLogger(__name__)

NEIGHBORS_K = 10
RECALL_K = 10
RECALL_SAMPLE = 200
RECALL_TARGET = 0.95
# Held-out recall queries: an indexed vector moved off itself by noise of this share of its
# length (cosine ~0.9 to the original), so the query is not in the index.
_QUERY_NOISE = 0.5
_NEIGHBOR_CHUNK = 10_000
# Table rows per DuckDB page when copying vectors (1280-d: 50 MB at most), ids per page of new posters.
_PAGE = 10_000
_INSERT_ROWS = 200_000  # poster_neighbors rows per INSERT


# A file in an index folder asking the next materialization to rebuild it even though it
# loads (``poster-assets rebuild-index --kind``); the rebuild's save removes it.
REBUILD_REQUEST = "rebuild-requested"


def index_dir(store: Store, kind: str) -> Path:
    return store.indexes_dir / kind


def request_rebuild(store: Store, kind: str) -> Path:
    """Make the next ``sync_index`` of ``kind`` rebuild its index from the stored vectors, even
    when the saved one loads and is current (readers keep using it until the new one is saved)."""
    marker = index_dir(store, kind) / REBUILD_REQUEST
    if marker.parent.exists() and not marker.parent.is_dir():
        marker.parent.unlink()  # a stray file where the folder belongs: the rebuild replaces it
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return marker


Vectors = np.ndarray | VectorSource


@dataclass
class IndexUpdate:
    kind: str
    version: str
    mode: str  # "build" | "add" | "unchanged" | "empty"
    reason: str
    added: int
    index: PosterIndex | None
    # The index's rows in its order (for recall and neighbours), or how to copy them from the
    # table: done on first use of ``vectors``, so an update nobody measures copies nothing.
    source: Vectors | Callable[[], Vectors]
    # The posters this update added to a saved index ("add"): what ``add_neighbors`` works from.
    fresh: tuple[str, ...] = ()

    @property
    def vectors(self) -> Vectors:
        if callable(self.source):
            self.source = self.source()
        return self.source

    @property
    def count(self) -> int:
        return self.index.count if self.index else 0


def copy_vectors(store: Store, kind: str, version: str, ids: Sequence[str], dim: int) -> ScratchVectors:
    """The vectors of ``ids`` copied from the table in one pass, a page at a time, into a
    scratch file in the home's index folder (same disk as the home; gone when dropped), row
    ``i`` holding ``ids[i]``. Raises LookupError when a poster of ``ids`` has no vector (the
    table changed meanwhile: run again)."""
    out = ScratchVectors(len(ids), dim, store.indexes_dir)
    where = {pid: i for i, pid in enumerate(ids)}
    filled = np.zeros(len(ids), bool)
    for page_ids, vectors in iter_stored_vectors(store, kind, version, _PAGE):
        rows = np.array([where.get(pid, -1) for pid in page_ids], np.int64)
        wanted = np.nonzero(rows >= 0)[0]
        wanted = wanted[np.argsort(rows[wanted])]  # in file order: neighbouring rows are one write
        out.write(rows[wanted], vectors[wanted])
        filled[rows[wanted]] = True
    if not filled.all():
        out.close()
        raise LookupError(
            f"{int((~filled).sum())} {kind} vector(s) at {version} vanished while copied; run again"
        )
    return out


def build_shard(store: Store, kind: str, version: str, shard: int, shards: int, seed: int = 0) -> Path:
    """Build and save shard ``shard`` of ``shards`` of ``kind``'s index from the table's vectors
    at ``version``: needs only the home folder, so shards build in separate processes (or on
    machines sharing it). Readers see the shards once ``write_manifest`` lists them."""
    ids, dim = read_ids(store, kind, version)
    mine = [pid for pid in ids if shard_of(pid, shards) == shard]
    if not mine:
        raise ValueError(f"shard {shard} of {shards} of {kind} would be empty ({len(ids)} posters)")
    source = copy_vectors(store, kind, version, mine, dim)
    try:
        spec = choose_index_spec(len(mine), dim, DEFAULT_MEMORY_BUDGET // shards)
        built = build_index(source, mine, spec, kind, version, seed=seed)
        return built.save(shard_folder(index_dir(store, kind), shard, shards))
    finally:
        source.close()


def _build_shard_in_child(home: str, kind: str, version: str, shard: int, shards: int, threads: int) -> str:
    faiss.omp_set_num_threads(threads)  # workers share the cores rather than oversubscribe them
    return str(build_shard(HomeStore(Path(home)), kind, version, shard, shards))


def build_shards(store: Store, kind: str, version: str, shards: int, workers: int = 1) -> ShardedIndex:
    """Build every shard (``workers`` > 1: in that many spawned processes), then publish them
    with one manifest and load them back."""
    folder = index_dir(store, kind)
    if workers <= 1:
        for shard in range(shards):
            build_shard(store, kind, version, shard, shards)
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        context = multiprocessing.get_context("spawn")  # no copy of this process's memory
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            jobs = [
                pool.submit(_build_shard_in_child, str(store.home_path), kind, version, s, shards, threads)
                for s in range(shards)
            ]
            for job in jobs:
                job.result()
    write_manifest(folder, shards)
    return ShardedIndex.load(folder, verify=False)


def _add_new(store: Store, kind: str, version: str, index: PosterIndex, fresh: Sequence[str]) -> int:
    """Add the vectors of ``fresh`` posters (read a page of ids at a time) to their shards."""
    added = 0
    for start in range(0, len(fresh), _PAGE):
        ids, vectors = read_vectors(store, kind, version, fresh[start : start + _PAGE])
        added += index.add(vectors, ids) if ids else 0
    return added


def _save(index: PosterIndex, folder: Path) -> None:
    index.save(folder)
    if not isinstance(index, ShardedIndex):
        drop_shards(folder)  # once sharded, now small again: the unsharded save is the index


def sync_index(
    store: Store, kind: str, version: str, shards: int | None = None, workers: int = 1
) -> IndexUpdate:
    """Bring the saved index of ``kind`` up to the table's vectors at ``version``.

    An index saved at the same version gets only the new posters (no retraining), each in the
    shard its id falls in. It is rebuilt from the table when it is missing or unreadable, was
    built at another version, holds posters the table no longer has at this version, has
    outgrown its index type or its number of shards (``shards``, default ``choose_shards``),
    or a rebuild was requested (``request_rebuild``). Shards are built in ``workers``
    processes. With no vectors at ``version`` the saved index is left as it is.
    """
    folder = index_dir(store, kind)
    ids, dim = read_ids(store, kind, version)
    if not ids:
        empty = np.empty((0, dim), np.float32)
        return IndexUpdate(kind, version, "empty", f"no {kind} embeddings at {version}", 0, None, empty)
    wanted = shards or choose_shards(len(ids))
    reason = ""
    index: PosterIndex | None = None
    requested = (folder / REBUILD_REQUEST).exists()
    if requested:
        reason = "a rebuild was requested (`poster-assets rebuild-index --kind`)"
    else:
        try:
            index = PosterIndex.load(folder)
        except IndexMissingError as exc:
            reason = str(exc)
        except IndexLoadError as exc:
            reason = f"saved index unreadable: {exc}"
    if index is not None:
        stored = set(ids)
        gone = sum(1 for pid in index.ids if pid not in stored)
        held = len(index.shards) if isinstance(index, ShardedIndex) else 1
        if index.model_version != version:
            reason = f"model version changed from {index.model_version or '?'} to {version}"
        elif index.dim != dim:
            reason = f"width changed from {index.dim} to {dim}"
        elif gone:
            reason = f"{gone} indexed poster(s) have no {kind} embedding at this version"
        elif held != wanted:
            reason = f"{len(ids)} posters want {wanted} shard(s), the index has {held}"
        else:
            fresh = [pid for pid in ids if pid not in index]
            added = _add_new(store, kind, version, index, fresh)
            if not index.should_rebuild():
                if added:
                    _save(index, folder)
                order = index.ids
                mode = "add" if added else "unchanged"
                return IndexUpdate(
                    kind,
                    version,
                    mode,
                    "",
                    added,
                    index,
                    lambda: copy_vectors(store, kind, version, order, dim),
                    tuple(fresh) if added else (),
                )
            reason = (
                f"{index.count} vectors outgrew a {index.spec.kind} index trained on {index.trained_count}"
            )
    log.info("rebuilding the %s index (%d shard(s)): %s", kind, wanted, reason)
    if wanted == 1:
        source: Vectors | Callable[[], Vectors] = copy_vectors(store, kind, version, ids, dim)
        built = build_index(source, ids, choose_index_spec(len(ids), dim), kind, version)
        _save(built, folder)
    else:
        built = build_shards(store, kind, version, wanted, workers)
        # Shards are id ranges, each in id order: the index's order is the ids' order.
        source = lambda: copy_vectors(store, kind, version, ids, dim)  # noqa: E731
    if requested:
        (folder / REBUILD_REQUEST).unlink(missing_ok=True)
    return IndexUpdate(kind, version, "build", reason, len(ids), built, source)


# Bump when what an index holds for the same vectors changes (the index spec, the neighbours).
_INDEX_METHOD = f"faiss-index-v1+k{NEIGHBORS_K}"


def vectors_version(store: Store, kinds: Mapping[str, str]) -> str:
    """What the indexes and ``poster_neighbors`` are made from, as one string: per current kind
    (``kinds``: kind -> version), the posters with a vector at that version and the vectors.
    ``faiss_index`` stamps its materializations with it as their data version, so the CLI can
    tell that no vector changed without opening an index."""
    wanted = [f"{k}={v}" for k, v in kinds.items()]
    rows = store.db.query(
        "SELECT kind, model_version, count(*), sum(hash(poster_id, embedding)) FROM foreground_embeddings "
        "WHERE list_contains(?, kind || '=' || model_version) GROUP BY ALL ORDER BY ALL",
        [wanted],
    )
    text = "|".join([_INDEX_METHOD, *sorted(wanted), *(",".join(map(str, r)) for r in rows)])
    return f"vectors:{hashlib.sha256(text.encode()).hexdigest()[:24]}"


def neighbors_in_step(
    store: Store, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K, before: bool = False
) -> bool:
    """Whether ``poster_neighbors`` holds what ``write_neighbors`` would write for ``updates``
    whose indexes did not change: each index's posters with their top ``k``, and nothing else.
    With ``before``: what it would have written before the updates added their fresh posters."""
    counts = [(u, u.count - (len(u.fresh) if before else 0)) for u in updates if u.index is not None]
    expected = {(u.kind, u.version): (n, n * min(k, n - 1)) for u, n in counts if n > 1}
    held = store.db.query(
        "SELECT kind, model_version, count(DISTINCT poster_id), count(*) FROM poster_neighbors GROUP BY ALL"
    )
    return {(kind, version): (posters, rows) for kind, version, posters, rows in held} == expected


def held_out_queries(vectors: Vectors, sample: int = RECALL_SAMPLE, seed: int = 0) -> np.ndarray:
    """Up to ``sample`` queries that are not in the index: indexed vectors moved off
    themselves by random noise and renormalised, like a new poster close to known ones."""
    rng = np.random.default_rng(seed)
    n, dim = vectors.shape
    rows = rng.choice(n, min(sample, n), replace=False)
    noise = rng.standard_normal((len(rows), dim)).astype(np.float32)
    noise *= _QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
    queries = gather_rows(vectors, rows) + noise
    return (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)


def index_recall(index: PosterIndex, vectors: Vectors, k: int = RECALL_K, seed: int = 0) -> float:
    """recall@k of the index against exact search (one chunk of ``vectors`` at a time), on
    held-out queries."""
    return recall_at_k(index, vectors, held_out_queries(vectors, seed=seed), k=k)


def _rows(vectors: Vectors, start: int, stop: int) -> np.ndarray:
    return vectors[start:stop] if isinstance(vectors, np.ndarray) else vectors.rows(start, stop)


def neighbor_positions(
    index: PosterIndex, vectors: Vectors, k: int = NEIGHBORS_K
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Per chunk of indexed posters, their top-``k`` other posters as arrays (poster position,
    rank, neighbour position, score), positions as in ``index.ids``: compact enough to hold
    for a million posters, where Python lists of ids were not. One search per poster, linear
    in the corpus."""
    for start in range(0, index.count, _NEIGHBOR_CHUNK):
        queries = _rows(vectors, start, start + _NEIGHBOR_CHUNK)
        scores, pos = index.search_positions(queries, k + 1)
        me = np.arange(start, start + len(queries))[:, None]
        # A poster is normally its own first hit; drop it wherever it lands.
        other = (pos >= 0) & (pos != me)
        rank = np.cumsum(other, axis=1)
        keep = other & (rank <= k)
        yield (
            np.broadcast_to(me, pos.shape)[keep],
            rank[keep].astype(np.int32),
            pos[keep],
            scores[keep].astype(np.float32),
        )


def neighbor_columns(
    index: PosterIndex, vectors: Vectors, k: int = NEIGHBORS_K
) -> tuple[list[str], list[int], list[str], list[float]]:
    """Each indexed poster's top-``k`` other posters: (poster_id, rank, neighbor_id, score)
    columns (small corpora; ``write_neighbors`` inserts a part at a time)."""
    ids = index.ids
    out: tuple[list[str], list[int], list[str], list[float]] = ([], [], [], [])
    for me, rank, hit, score in neighbor_positions(index, vectors, k):
        out[0].extend(ids[p] for p in me)
        out[1].extend(rank.tolist())
        out[2].extend(ids[p] for p in hit)
        out[3].extend(score.tolist())
    return out


def write_neighbors(store: Store, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K) -> int:
    """Replace ``poster_neighbors`` with the top-``k`` of every index, in one transaction
    (readers see the old table or the new one). Returns the rows written. The searches run
    before the transaction (the database is not locked meanwhile); rows are then inserted
    ``_INSERT_ROWS`` at a time."""
    found = []
    for u in updates:
        if u.index is not None:
            parts = list(neighbor_positions(u.index, u.vectors, k))
            found.append((u, [np.concatenate(c) for c in zip(*parts, strict=True)] if parts else None))
    written = 0
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM poster_neighbors")
        for update, columns in found:
            if columns is None or not len(columns[0]):
                continue
            ids = update.index.ids if update.index is not None else []
            me, rank, hit, score = columns
            for lo in range(0, len(me), _INSERT_ROWS):
                part = slice(lo, lo + _INSERT_ROWS)
                # One statement over unnested lists: executemany would be a round trip per row.
                conn.execute(
                    "INSERT INTO poster_neighbors (poster_id, kind, model_version, rank, neighbor_id, score) "
                    "SELECT unnest(?::VARCHAR[]), ?, ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
                    "unnest(?::DOUBLE[])",
                    [
                        [ids[p] for p in me[part]],
                        update.kind,
                        update.version,
                        rank[part].tolist(),
                        [ids[p] for p in hit[part]],
                        score[part].astype(np.float64).tolist(),
                    ],
                )
            written += len(me)
    return written


def refresh_neighbors(store: Store, updates: Sequence[IndexUpdate], k: int = NEIGHBORS_K) -> str:
    """Bring ``poster_neighbors`` up to ``updates``: "unchanged" when it already is; "added"
    when the updates only added posters to indexes whose neighbours the table held
    (``add_neighbors``: one pass over the vectors instead of a search per poster, minutes
    instead of most of an hour at a million posters); else "rewritten" whole."""
    if all(u.mode == "unchanged" for u in updates) and neighbors_in_step(store, updates, k):
        return "unchanged"
    only_added = all(u.mode in ("add", "unchanged") for u in updates)
    if only_added and neighbors_in_step(store, updates, k, before=True):
        for update in updates:
            if update.fresh:
                add_neighbors(store, update, k)
        return "added"
    write_neighbors(store, updates, k)
    return "rewritten"


def add_neighbors(store: Store, update: IndexUpdate, k: int = NEIGHBORS_K) -> int:
    """Update the ``poster_neighbors`` rows of ``update``'s kind and version, which hold the top
    ``k`` of the posters before ``update.fresh`` were added, to the top ``k`` of all of them.

    A fresh poster's list is searched in the index. An older poster's list can only change by
    taking in fresh posters: those that score above its ``k``-th neighbour, found with one pass
    over the stored vectors (each page against the fresh vectors: a matrix product). Exact
    where the index is (every score is an exact cosine), so equal to rewriting the table.
    Returns the rows written, in one transaction."""
    if update.index is None or not update.fresh:
        raise ValueError(f"{update.kind}: no index with fresh posters to add neighbours for")
    fresh_ids, fresh = read_vectors(store, update.kind, update.version, list(update.fresh))
    key = [update.kind, update.version]
    rows: dict[str, list[tuple[str, float]]] = {}
    scores, hits = update.index.search(fresh, k + 1)
    for pid, row_scores, row_hits in zip(fresh_ids, scores, hits, strict=True):
        rows[pid] = [(h, float(s)) for h, s in zip(row_hits, row_scores, strict=False) if h != pid][:k]

    # An older poster's bar: its k-th neighbour's score, or none while it has fewer than k.
    held = store.db.query(
        "SELECT poster_id, count(*), min(score) FROM poster_neighbors "
        "WHERE kind = ? AND model_version = ? GROUP BY ALL",
        key,
    )
    bar = {pid: score if n >= k else -np.inf for pid, n, score in held}
    new_set = set(fresh_ids)
    entering: dict[str, list[tuple[str, float]]] = {}
    for page_ids, page in iter_stored_vectors(store, update.kind, update.version, _PAGE):
        older = np.array([pid not in new_set for pid in page_ids])
        if not older.any():
            continue
        page_ids, similarity = page_ids[older], page[older] @ fresh.T
        bars = np.array([bar.get(pid, -np.inf) for pid in page_ids], np.float32)
        for i, j in zip(*np.nonzero(similarity > bars[:, None]), strict=True):
            entering.setdefault(str(page_ids[i]), []).append((fresh_ids[j], float(similarity[i, j])))
    if entering:
        kept = store.db.query(
            "SELECT poster_id, neighbor_id, score FROM poster_neighbors WHERE kind = ? AND model_version = ? "
            "AND poster_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY poster_id, rank",
            [*key, list(entering)],
        )
        for pid, neighbor, score in kept:
            entering[pid].append((neighbor, score))
        for pid, candidates in entering.items():
            rows[pid] = sorted(candidates, key=lambda c: -c[1])[:k]

    columns: tuple[list[str], list[int], list[str], list[float]] = ([], [], [], [])
    for pid, ranked in rows.items():
        for rank, (neighbor, score) in enumerate(ranked, start=1):
            columns[0].append(pid)
            columns[1].append(rank)
            columns[2].append(neighbor)
            columns[3].append(score)
    with store.db.transaction() as conn:
        conn.execute(
            "DELETE FROM poster_neighbors WHERE kind = ? AND model_version = ? "
            "AND poster_id IN (SELECT unnest(?::VARCHAR[]))",
            [*key, list(rows)],
        )
        conn.execute(
            "INSERT INTO poster_neighbors (poster_id, kind, model_version, rank, neighbor_id, score) "
            "SELECT unnest(?::VARCHAR[]), ?, ?, unnest(?::INTEGER[]), unnest(?::VARCHAR[]), "
            "unnest(?::DOUBLE[])",
            [columns[0], *key, columns[1], columns[2], columns[3]],
        )
    return len(columns[0])
