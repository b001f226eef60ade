"""Where the dbt project is and what a build of it reads, summed up as one version string.

``sql_models`` stamps each model it builds with ``inputs_version`` as its Dagster data version
and skips ``dbt build`` when every model it would build already carries the current one; the
CLI compares the same strings to tell whether the marts are behind without launching a run.
Nothing here imports dbt or dagster-dbt (seconds of imports): only the manifest's JSON is read.

The version covers everything a build's result depends on: the project's files, the versions
the models in use call current (``current_versions``, which the build writes first) and the
content of every table the SQL reads (a row count and an order-free sum of row hashes, one scan
per table: milliseconds at the demo's size, far below the build it saves).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster._core.definitions.data_version import DATA_VERSION_TAG

from poster_assets import settings
from poster_assets.storage.database import Database

DBT_PROJECT_DIR = Path(__file__).resolve().parents[3] / "dbt"
# The files a build's result depends on; a change to any of them also makes the manifest stale.
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")
_OWN_TARGET = Path("target")
# Bump when what the version covers changes: every model is then built once more.
_METHOD = "dbt-inputs-v1"
# Tables the models read by name (the `store_table` macro) rather than as a dbt source.
_STORE_TABLE = re.compile(r"""store_table\(\s*['"](\w+)['"]\s*\)""")
# Written by the build itself from the models in use: covered by the versions, not its rows.
_WRITTEN_BY_THE_BUILD = frozenset({"current_versions"})


def _writable(folder: Path) -> bool:
    """Whether this process may create files in ``folder``, or create it."""
    while not folder.exists():
        folder = folder.parent
    return os.access(folder, os.W_OK | os.X_OK)


def manifest_target(project_dir: Path = DBT_PROJECT_DIR, home: Path | None = None) -> Path:
    """The target folder the manifest is prepared in and loaded from: the project's own
    ``target`` (relative, as dbt has it) when writable, else a folder under the home."""
    if _writable(project_dir / _OWN_TARGET):
        return _OWN_TARGET
    key = hashlib.sha256(str(project_dir.resolve()).encode()).hexdigest()[:12]
    return (home or settings.home_dir()) / "dbt" / f"manifest-{key}"


def manifest_path(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Where ``DbtProject(project_dir, target_path=manifest_target())`` finds its manifest."""
    return project_dir / manifest_target(project_dir) / "manifest.json"


def latest_data_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The data version the latest materialization of ``key`` carries, None when never
    materialized (``sql_models`` and the CLI compare it with ``inputs_version``)."""
    records = instance.fetch_materializations(key, limit=1).records
    materialization = records[0].asset_materialization if records else None
    return materialization.tags.get(DATA_VERSION_TAG) if materialization else None


def project_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    """Every file of the project a build reads, in a stable order."""
    roots = [project_dir / name for name in PROJECT_FILES]
    found = [f for root in roots for f in ([root] if root.is_file() else sorted(root.rglob("*")))]
    return [f for f in found if f.is_file()]


def project_digest(project_dir: Path = DBT_PROJECT_DIR) -> str:
    digest = hashlib.sha256()
    for path in project_files(project_dir):
        digest.update(str(path.relative_to(project_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def _load_manifest(path: Path, mtime_ns: int) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def load_manifest(path: Path | None = None) -> dict[str, Any]:
    """The parsed manifest (read once per file version)."""
    path = path or manifest_path()
    return _load_manifest(path, path.stat().st_mtime_ns)


def models(manifest: Mapping[str, Any]) -> dict[dg.AssetKey, Mapping[str, Any]]:
    """Asset key -> manifest node of every model, upstream models first, keyed as dagster-dbt's
    default translator keys them (``[schema, name]`` when the model configures a schema; ours
    overrides no key)."""
    nodes = {uid: n for uid, n in manifest["nodes"].items() if n["resource_type"] == "model"}
    order = TopologicalSorter(
        {uid: [d for d in n["depends_on"]["nodes"] if d in nodes] for uid, n in nodes.items()}
    )
    found = {}
    for uid in order.static_order():
        node = nodes[uid]
        schema = node["config"].get("schema")
        found[dg.AssetKey([schema, node["name"]] if schema else [node["name"]])] = node
    return found


def input_tables(manifest: Mapping[str, Any]) -> list[str]:
    """The poster store's tables the project reads: its sources, and the tables named through
    ``store_table``, less those the build writes itself."""
    tables = {s["identifier"] for s in manifest["sources"].values()}
    for node in manifest["nodes"].values():
        tables.update(_STORE_TABLE.findall(node.get("raw_code") or ""))
    return sorted(tables - _WRITTEN_BY_THE_BUILD)


def _table_digests(db: Database, tables: Iterable[str]) -> dict[str, list[str] | None]:
    """table -> [rows, sum of row hashes] as text, or None when the table is not there."""
    out: dict[str, list[str] | None] = {}
    if not db.path.exists():
        return dict.fromkeys(tables)
    # Not read-only: a writer of this process (the build's, a test's) may hold the file, and
    # DuckDB refuses a second connection with another configuration in one process.
    with db.connect() as conn:
        for table in tables:
            try:
                rows, hashed = conn.execute(f'SELECT count(*), sum(hash(t)) FROM main."{table}" t').fetchone()
            except duckdb.CatalogException:
                out[table] = None
                continue
            out[table] = [str(rows), str(hashed)]
    return out


def inputs_version(
    db: Database,
    versions: Mapping[str, str],
    manifest: Mapping[str, Any],
    project_dir: Path = DBT_PROJECT_DIR,
) -> str:
    """One string that changes when anything a build reads does: the project's files, the
    current version of each extractor (``versions``, asset -> version) and the content of
    every table the SQL reads."""
    facts = {
        "method": _METHOD,
        "project": project_digest(project_dir),
        "versions": dict(sorted(versions.items())),
        "tables": _table_digests(db, input_tables(manifest)),
    }
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()
    return f"{_METHOD}:{digest[:24]}"
