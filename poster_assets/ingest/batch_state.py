"""What a batch is, from what exists: its manifest, its rows and its extraction records.

A batch is one JSON manifest under ``<home>/batches`` (the files it holds), the
``raw_posters`` rows its ingest wrote and the ``extractions`` records of each extractor for its
ok posters. ``storage_facts`` reads those; the CLI adds what Dagster knows (the latest run for
the partition, which assets it materialized) and ``decide_state`` names the state a person
sees in ``poster-assets batches list``. ``plan_abandon`` / ``abandon`` remove a batch's rows
and the files only they used (the CLI removes the Dagster partition). No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from poster_assets.ingest.batches import BatchManifest, FileEntry
from poster_assets.storage.blobs import BlobStore
from poster_assets.storage.catalog import refresh_catalog
from poster_assets.storage.database import Database
from poster_assets.storage.lake import LAKE_TABLES, Lake
from poster_assets.storage.schema import BLOB_PATH_COLUMNS

log = logging.getLogger(__name__)

# The states, in the order a batch goes through them (failed and running can happen at any step).
PLANNED = "planned"  # a manifest, no rows: ingest never finished (or never started)
INGESTED = "ingested"  # raw_posters done, some extractor not materialized
COMPLETE = "complete"  # every asset of batch_job materialized for it
FAILED = "failed"  # the latest run for the partition failed (or was cancelled, or was killed)
RUNNING = "running"  # a run for the partition is queued or in progress
STATES = (PLANNED, INGESTED, COMPLETE, FAILED, RUNNING)
# States in which something is left to do that nothing is doing.
UNFINISHED = (PLANNED, INGESTED, FAILED)

RAW_ASSET = "raw_posters"
# The per-poster extractors of batch_job, in pipeline order, with the short names a table shows.
EXTRACTORS: dict[str, str] = {
    "ocr_text": "ocr",
    "depth_maps": "depth",
    "foreground_masks": "fg",
    "layer_masks": "layers",
    "foreground_embeddings": "emb",
}

# Tables holding per-poster values, keyed by poster_id, and their columns of blob paths
# (relative to the home folder). raw_posters is handled by batch, not by poster.
POSTER_TABLES: dict[str, tuple[str, ...]] = {
    t: BLOB_PATH_COLUMNS.get(t, ())
    for t in (
        "extractions",
        "ocr_text",
        "depth_maps",
        "foreground_masks",
        "layer_masks",
        "foreground_embeddings",
        "poster_neighbors",
        "layer_scores",
    )
}
RAW_PATH_COLUMNS = BLOB_PATH_COLUMNS["raw_posters"]


@dataclass(frozen=True)
class BatchFacts:
    """What the home folder holds of one batch."""

    batch: str
    has_manifest: bool
    source_dir: str | None = None
    created_at: str | None = None
    files: int = 0  # in the manifest
    rows: int = 0  # raw_posters rows of the batch
    ok: int = 0
    quarantined: int = 0
    duplicates: int = 0
    extracted: dict[str, int] = field(default_factory=dict)  # asset -> ok posters with an ok record
    failed: dict[str, int] = field(default_factory=dict)  # asset -> ok posters whose record failed

    @property
    def extracted_total(self) -> int:
        return sum(self.extracted.get(a, 0) for a in EXTRACTORS)

    @property
    def failed_total(self) -> int:
        return sum(self.failed.get(a, 0) for a in EXTRACTORS)

    @property
    def expected_total(self) -> int:
        """(asset, poster) pairs once every extractor processed every ok poster."""
        return self.ok * len(EXTRACTORS)

    def pending(self, asset: str) -> int:
        """Ok posters with neither a value nor a failure of ``asset`` at the versions the facts
        were read at: what a run of the extractor would process."""
        return self.ok - self.extracted.get(asset, 0) - self.failed.get(asset, 0)

    @property
    def all_extracted(self) -> bool:
        """No extractor has an ok poster left at the versions the facts were read at."""
        return not any(self.pending(a) for a in EXTRACTORS)


@dataclass(frozen=True)
class RunFacts:
    """What the orchestrator knows of one batch, as plain values (filled in by the CLI)."""

    registered: bool = True  # the batch is a partition the orchestrator knows
    run_id: str | None = None  # the latest run for the partition
    run_status: str | None = None  # "running" | "failed" | "succeeded" | None (no run)
    failed_steps: tuple[str, ...] = ()  # steps that failed, or "<step> (interrupted)" (killed mid-step)
    failure: str | None = None  # the first line of why the latest run failed
    materialized: frozenset[str] = frozenset()  # assets materialized for the partition


@dataclass(frozen=True)
class BatchState:
    facts: BatchFacts
    run: RunFacts
    state: str
    assets: tuple[str, ...]  # the assets a complete batch has materialized

    @property
    def batch(self) -> str:
        return self.facts.batch

    @property
    def up_to_date(self) -> bool:
        """Complete, and no extractor has a poster left at the versions its facts were read at
        (the current ones): a ``batch_job`` run would change nothing."""
        return self.state == COMPLETE and self.facts.all_extracted

    @property
    def missing(self) -> tuple[str, ...]:
        """The assets not materialized for this batch yet."""
        return tuple(a for a in self.assets if a not in self.run.materialized)

    @property
    def note(self) -> str:
        """One line on why the batch is in its state."""
        if self.state == FAILED:
            where = ", ".join(self.run.failed_steps)
            if where and self.run.failure:
                return f"{where}: {self.run.failure}"
            return where or self.run.failure or "its latest run failed"
        if self.state == RUNNING:
            return f"run {(self.run.run_id or '?')[:8]} in progress"
        if self.state == INGESTED:
            return "not materialized: " + ", ".join(self.missing)
        if self.state == PLANNED:
            if not self.run.registered:
                return "no partition in Dagster: the process stopped before its first run"
            return "raw_posters never materialized" + ("" if self.run.run_id else " (no run yet)")
        return ""

    def as_dict(self) -> dict[str, object]:
        f = self.facts
        return {
            "batch": f.batch,
            "state": self.state,
            "note": self.note,
            "source_dir": f.source_dir,
            "created_at": f.created_at,
            "files": f.files,
            "rows": f.rows,
            "ok": f.ok,
            "quarantined": f.quarantined,
            "duplicates": f.duplicates,
            "extracted": {a: f.extracted.get(a, 0) for a in EXTRACTORS},
            "failed": {a: f.failed.get(a, 0) for a in EXTRACTORS},
            "missing_assets": list(self.missing),
            "latest_run": self.run.run_id,
            "latest_run_status": self.run.run_status,
        }


def decide_state(facts: BatchFacts, run: RunFacts, assets: Sequence[str]) -> BatchState:
    """The state of a batch: running and failed come from its latest run; otherwise complete
    when every asset in ``assets`` is materialized for it, ingested when ``raw_posters`` is (or
    it has rows), planned when only its manifest exists."""
    if run.run_status == "running":
        state = RUNNING
    elif run.run_status == "failed":
        state = FAILED
    elif assets and all(a in run.materialized for a in assets):
        state = COMPLETE
    elif RAW_ASSET in run.materialized or facts.rows:
        state = INGESTED
    else:
        state = PLANNED
    return BatchState(facts, run, state, tuple(assets))


def manifest_names(batches_dir: Path) -> list[str]:
    """Every batch with a manifest, oldest first (batch names sort by their time stamp)."""
    if not batches_dir.exists():
        return []
    return sorted(p.stem for p in batches_dir.glob("*.json") if not p.name.startswith("."))


def batches_holding(batches_dir: Path, entries: Iterable[FileEntry]) -> dict[str, int]:
    """{batch: how many of ``entries`` its manifest holds}, for the batches holding any."""
    keys = {e.key for e in entries}
    found: dict[str, int] = {}
    for name in manifest_names(batches_dir):
        try:
            raw = json.loads((batches_dir / f"{name}.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            log.warning("batch manifest %s unreadable: %s", name, exc)
            continue
        n = sum((f["path"], f["size"], f["mtime_ns"]) in keys for f in raw.get("files", []))
        if n:
            found[name] = n
    return found


def _created(text: str | None) -> str | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return text


def storage_facts(
    db: Database,
    batches_dir: Path,
    batches: Iterable[str] | None = None,
    versions: Mapping[str, str] | None = None,
    include: Iterable[str] = (),
) -> dict[str, BatchFacts]:
    """Facts of ``batches`` (default: every batch with a manifest or rows, and those named in
    ``include``), in a few queries.

    An extractor counts a poster as extracted (or failed) by its record at ``versions[asset]``
    (the current version, which is what a re-run skips); without ``versions``, by the latest
    record of any version."""
    names = list(batches) if batches is not None else None
    manifests: dict[str, BatchManifest | None] = {}
    for name in names if names is not None else manifest_names(batches_dir):
        try:
            manifests[name] = BatchManifest.load(batches_dir, name)
        except FileNotFoundError:
            manifests[name] = None
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("batch manifest %s unreadable: %s", name, exc)
            manifests[name] = None
    counts: dict[str, dict[str, int]] = {}
    extracted: dict[str, dict[str, int]] = {}
    failed: dict[str, dict[str, int]] = {}
    if db.path.exists():
        for batch, status, n in db.query("SELECT batch, status, count(*) FROM raw_posters GROUP BY ALL"):
            counts.setdefault(batch, {})[status] = n
        if versions:
            records = (
                "SELECT asset, poster_id, status FROM extractions "
                "WHERE list_contains(?, asset || '=' || model_version)"
            )
            params: list = [[f"{a}={v}" for a, v in versions.items()]]
        else:
            records = (
                "SELECT asset, poster_id, arg_max(status, extracted_at) AS status FROM extractions "
                "GROUP BY asset, poster_id"
            )
            params = []
        query = (
            f"WITH rec AS ({records}), ok AS (SELECT DISTINCT batch, poster_id FROM raw_posters "
            "WHERE status = 'ok') SELECT ok.batch, rec.asset, rec.status, count(DISTINCT poster_id) "
            "FROM rec JOIN ok USING (poster_id) GROUP BY ALL"
        )
        for batch, asset, status, n in db.query(query, params):
            (extracted if status == "ok" else failed).setdefault(batch, {})[asset] = n
    if names is None:
        names = sorted(set(manifests) | set(counts) | set(include))
    out = {}
    for name in names:
        m = manifests.get(name)
        c = counts.get(name, {})
        out[name] = BatchFacts(
            batch=name,
            has_manifest=m is not None,
            source_dir=m.source_dir if m else None,
            created_at=_created(m.created_at) if m else None,
            files=len(m.files) if m else 0,
            rows=sum(c.values()),
            ok=c.get("ok", 0),
            quarantined=c.get("quarantined", 0),
            duplicates=c.get("duplicate", 0),
            extracted=extracted.get(name, {}),
            failed=failed.get(name, {}),
        )
    return out


@dataclass
class AbandonPlan:
    """What abandoning a batch removes."""

    batch: str
    manifest: Path | None  # None when there is none
    rows: dict[str, int] = field(default_factory=dict)  # table -> rows
    poster_ids: list[str] = field(default_factory=list)  # whose per-poster rows go
    shared: list[str] = field(default_factory=list)  # poster ids another batch holds: kept
    files: list[str] = field(default_factory=list)  # blob paths (relative to home) only its rows use
    file_bytes: int = 0

    @property
    def row_total(self) -> int:
        return sum(self.rows.values())

    @property
    def empty(self) -> bool:
        return self.manifest is None and not self.row_total and not self.files


def _paths(conn, table: str, cols: Sequence[str], where: str, params: list) -> set[str]:
    """The distinct non-null values of ``cols`` in the rows of ``table`` matching ``where``."""
    found: set[str] = set()
    for col in cols:
        rows = conn.execute(
            f"SELECT DISTINCT {col} FROM {table} WHERE ({where}) AND {col} IS NOT NULL", params
        ).fetchall()
        found.update(p for (p,) in rows)
    return found


def _remove_from_lake(lake: Lake, batch: str, poster_ids: list[str]) -> bool:
    """Rewrite the batch's segments without its rows; True when nothing of it was left."""
    lake.delete_rows("raw_posters", "batch = ?", [batch], batch=batch)
    if poster_ids:
        for table in POSTER_TABLES:
            if table in LAKE_TABLES:
                lake.delete_rows(table, "poster_id IN ?", [poster_ids], batch=batch)
    if any(lake.batch_dir(batch).glob("*/*.parquet")):
        return False  # rows of its posters that another batch holds
    lake.remove_batch(batch)
    return True


def _poster_where(table: str) -> str:
    """The rows of ``table`` about the posters in the (one) list parameter, bound once per ``?``."""
    return "poster_id IN ?" + (" OR neighbor_id IN ?" if table == "poster_neighbors" else "")


def _plan(conn, blobs: BlobStore, batches_dir: Path, batch: str) -> AbandonPlan:
    manifest = batches_dir / f"{batch}.json"
    plan = AbandonPlan(batch, manifest if manifest.exists() else None)
    ids = [
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT poster_id FROM raw_posters WHERE batch = ?", [batch]
        ).fetchall()
    ]
    shared = {
        r[0]
        for r in conn.execute(
            "SELECT DISTINCT poster_id FROM raw_posters WHERE batch <> ? AND poster_id IN ?", [batch, ids]
        ).fetchall()
    }
    plan.poster_ids = sorted(set(ids) - shared)
    plan.shared = sorted(shared)
    (n,) = conn.execute("SELECT count(*) FROM raw_posters WHERE batch = ?", [batch]).fetchone()
    if n:
        plan.rows["raw_posters"] = n
    gone = _paths(conn, "raw_posters", RAW_PATH_COLUMNS, "batch = ?", [batch])
    # A plan reads a file read-only, so one written before a table was added lacks that table.
    tables = {
        t: cols
        for t, cols in POSTER_TABLES.items()
        if conn.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'main' AND table_name = ?", [t]
        ).fetchone()[0]
    }
    for table, cols in tables.items():
        where = _poster_where(table)
        params = [plan.poster_ids] * where.count("?")
        (n,) = conn.execute(f"SELECT count(*) FROM {table} WHERE {where}", params).fetchone()
        if n:
            plan.rows[table] = n
        gone |= _paths(conn, table, cols, where, params)
    # A file stays while a row that is not going uses it (paths are content- or id-addressed,
    # so another batch's row of the same poster can name the same file).
    candidates = sorted(gone)
    kept = set()
    for col in RAW_PATH_COLUMNS:
        kept |= _paths(conn, "raw_posters", (col,), f"batch <> ? AND {col} IN ?", [batch, candidates])
    for table, cols in tables.items():
        for col in cols:
            kept |= _paths(
                conn, table, (col,), f"NOT (poster_id IN ?) AND {col} IN ?", [plan.poster_ids, candidates]
            )
    plan.files = sorted(gone - kept)
    plan.file_bytes = sum(_size(blobs.abspath(p)) for p in plan.files)
    return plan


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_abandon(db: Database, blobs: BlobStore, batches_dir: Path, batch: str) -> AbandonPlan:
    """What ``abandon`` would remove, read without writing anything."""
    if not db.path.exists():
        manifest = batches_dir / f"{batch}.json"
        return AbandonPlan(batch, manifest if manifest.exists() else None)
    with db.connect(read_only=True) as conn:
        return _plan(conn, blobs, batches_dir, batch)


def abandon(db: Database, blobs: BlobStore, batches_dir: Path, batch: str) -> AbandonPlan:
    """Remove a batch: its ``raw_posters`` rows, every per-poster row (``POSTER_TABLES``) of its
    posters that no other batch holds, in one transaction; then the blob files only those rows
    used, then its manifest (last, so that a crash before it leaves the batch listed and a
    second ``abandon`` finishes). Files go after the commit: a crash in between can leave
    orphan files, never rows without their files. Returns what was removed."""
    if db.path.exists():
        refresh_catalog(db, batch)  # rows of the batch waiting in the lake are removed too
        with db.transaction() as conn:
            plan = _plan(conn, blobs, batches_dir, batch)
            conn.execute("DELETE FROM raw_posters WHERE batch = ?", [batch])
            if plan.poster_ids:
                for table in POSTER_TABLES:
                    where = _poster_where(table)
                    conn.execute(f"DELETE FROM {table} WHERE {where}", [plan.poster_ids] * where.count("?"))
            # Before the commit: a crash between leaves the catalog whole and a second abandon
            # finishes. The rows of posters only this batch holds were written by its own runs.
            if _remove_from_lake(db.lake, batch, plan.poster_ids):
                conn.execute("DELETE FROM lake_segments WHERE batch = ?", [batch])
    else:
        plan = plan_abandon(db, blobs, batches_dir, batch)
    for rel in plan.files:
        blobs.abspath(rel).unlink(missing_ok=True)
    if plan.manifest is not None:
        plan.manifest.unlink(missing_ok=True)
    return plan
