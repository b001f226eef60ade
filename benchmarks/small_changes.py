"""Small changes cost little (issue 13, part 3): on a copy of a demo home, the seconds of a no-op
refresh (`poster-assets run --all` with nothing new: no run should start, no model compile) and of
2 new posters becoming searchable and in the marts (`poster-assets ingest FOLDER --extract`),
split by phase, and the same with the code of a git ref (the baseline) on another copy.

    .venv/bin/python benchmarks/small_changes.py --home poster_data [--new 2] [--baseline REF|none]
        [--repeat 3] [--keep]
    .venv/bin/python benchmarks/small_changes.py                    # builds a 200-poster demo home first

The home given is copied to a scratch folder under /tmp (never changed). Each variant then runs,
on its own copy: `run --all` (to bring the copy to that code's model versions), `ingest --extract`
of 1 warm-up poster (so dbt's partial-parse state belongs to the copy, as in a home that was not
moved), the timed no-op `run --all`, and the timed `ingest --extract` of the new posters, which
are then looked up with search and in `marts.poster_annotations`. The baseline runs the ref's
code (`git archive`, first on PYTHONPATH) with this venv. Timings on a shared machine are noisy
(one run of either can take half as long again): compare the two variants of one run, with
`--repeat` measurements of each taken in turns (new posters each time) and their medians, and see
the CPU seconds beside each wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI in this process and says on stderr how many networks OpenVINO compiled.
_COUNTING_CLI = """
import atexit, sys
import openvino
compiles = []
_compile = openvino.Core.compile_model
def counted(self, *args, **kwargs):
    compiles.append(1)
    return _compile(self, *args, **kwargs)
openvino.Core.compile_model = counted
atexit.register(lambda: print(f"@@compiles {len(compiles)}", file=sys.stderr))
import poster_assets.cli as cli
sys.argv[0] = "poster-assets"
getattr(cli, "entry_point", cli.main)()  # the program as installed (older refs: main)
"""
# Steps worth naming in a phase split; the rest are summed as "other steps".
_NAMED_STEPS = ("sql_models", "faiss_index", "layer_quality_check")


@dataclass
class Timed:
    wall: float
    cpu: float
    compiles: int
    output: str
    runs: list[dict] = field(default_factory=list)


def _cli(home: Path, code: Path | None, *args: str) -> Timed:
    """``poster-assets ARGS`` on ``home`` in a process of its own (with ``code`` first on
    PYTHONPATH for the baseline); wall and CPU seconds (its children's, dbt's included)."""
    env = {**os.environ, "POSTER_ASSETS_HOME": str(home), "POSTER_ASSETS_OFFLINE": "1"}
    env.pop("DAGSTER_HOME", None)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    # Not from the checkout: `python -c` puts the working folder first on sys.path.
    done = subprocess.run(
        [sys.executable, "-c", _COUNTING_CLI, *args], env=env, cwd=home.parent, capture_output=True, text=True
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(
            f"poster-assets {' '.join(args)} failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    compiles = next((int(x.split()[1]) for x in done.stderr.splitlines() if x.startswith("@@compiles")), -1)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return Timed(wall, cpu, compiles, done.stdout)


def _runs_since(home: Path, since: float) -> list[dict]:
    """The runs created on the home's instance after ``since`` (epoch seconds), oldest first, with
    their creation-to-start seconds, run seconds and step seconds."""
    import dagster as dg

    out = []
    with dg.DagsterInstance.from_config(str(home / "dagster")) as inst:
        for record in reversed(inst.get_run_records(limit=20)):
            created = record.create_timestamp.timestamp()
            if created < since or record.start_time is None:
                continue
            steps = {
                s.step_key: s.end_time - s.start_time
                for s in inst.get_run_step_stats(record.dagster_run.run_id)
            }
            out.append(
                {
                    "job": record.dagster_run.job_name,
                    "launch": record.start_time - created,
                    "run": (record.end_time or record.start_time) - record.start_time,
                    "steps": steps,
                }
            )
    return out


def _timed_with_runs(home: Path, code: Path | None, *args: str) -> Timed:
    since = time.time()
    timed = _cli(home, code, *args)
    timed.runs = _runs_since(home, since)
    return timed


def _new_posters(folder: Path, n: int, seed: int) -> Path:
    from poster_assets.demo import generate_corpus

    generate_corpus(folder, n=n, seed=seed)
    return folder


def _found(home: Path, folder: Path) -> tuple[int, int]:
    """(posters of ``folder`` that search by id finds in the poster index, those in the marts)."""
    from poster_assets.search.api import search
    from poster_assets.storage.store import Store

    store = Store.at(home)
    ids = [
        r[0]
        for r in store.db.query(
            "SELECT poster_id FROM raw_posters WHERE status = 'ok' AND starts_with(source_uri, ?)",
            [str(folder)],
        )
    ]
    searchable = sum(1 for pid in ids if search(query_poster_id=pid, kind="poster", k=1, store=store))
    marts = store.db.query("SELECT count(*) FROM marts.poster_annotations WHERE poster_id IN ?", [ids])[0][0]
    return searchable, marts


def _checkout(ref: str, dest: Path) -> Path:
    """The package, its dbt project and the files Dagster loads it with at ``ref``, unpacked with
    ``git archive`` (the work tree is not touched)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", ref, "poster_assets", "dbt", "workspace.yaml", "pyproject.toml"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    return dest


def _phases(timed: Timed) -> str:
    """Wall seconds split into each run's launch (creating it, until its first step), its named
    steps and other steps, and what the CLI spent outside runs (start-up, imports, definitions)."""
    parts, in_runs = [], 0.0
    for run in timed.runs:
        named = {k: v for k, v in run["steps"].items() if k in _NAMED_STEPS}
        other = run["run"] - sum(named.values())
        in_runs += run["launch"] + run["run"]
        detail = "".join(f"{k} {v:.1f}, " for k, v in named.items())
        parts.append(
            f"{run['job']}: launch {run['launch']:.1f} + run {run['run']:.1f} "
            f"({detail}other steps and events {other:.1f})"
        )
    parts.insert(0, f"CLI outside runs {timed.wall - in_runs:.1f}")
    return "; ".join(parts)


def _prepare(name: str, source: Path, scratch: Path, code: Path | None, seed: int) -> Path:
    """A copy of ``source`` brought to the variant's model versions and warmed up."""
    home = scratch / f"home-{name}"
    print(f"[{name}] copying {source} to {home} …", flush=True)
    shutil.copytree(source, home, symlinks=True)
    prepared = _cli(home, code, "run", "--all")
    print(
        f"[{name}] prepare: run --all {prepared.wall:.1f} s (brings the copy to this code's versions)",
        flush=True,
    )
    warm = _new_posters(scratch / f"warm-{name}", 1, seed + 1)
    warmed = _cli(home, code, "ingest", str(warm), "--extract")
    print(f"[{name}] warm-up: ingest --extract of 1 poster {warmed.wall:.1f} s", flush=True)
    return home


def _measure(name: str, home: Path, scratch: Path, code: Path | None, new: int, seed: int) -> dict:
    """The timed no-op ``run --all``, then ``ingest --extract`` of ``new`` posters made with ``seed``."""
    noop = _timed_with_runs(home, code, "run", "--all")
    folder = _new_posters(scratch / f"new-{name}-{seed}", new, seed)
    added = _timed_with_runs(home, code, "ingest", str(folder), "--extract")
    searchable, marts = _found(home, folder)
    print(f"[{name}] no-op {noop.wall:.1f} s, {new} new posters {added.wall:.1f} s", flush=True)
    return {"noop": noop, "added": added, "searchable": searchable, "marts": marts}


def _median(results: list[dict], key: str) -> dict:
    """The repeat whose ``key`` wall time is the median (the lower one of an even count)."""
    ordered = sorted(results, key=lambda r: r[key].wall)
    return ordered[(len(ordered) - 1) // 2]


def _report(name: str, results: list[dict], new: int) -> None:
    noop, added = _median(results, "noop")["noop"], _median(results, "added")
    walls = {k: ", ".join(f"{r[k].wall:.1f}" for r in results) for k in ("noop", "added")}
    print(f"\n== {name}")
    print(
        f"no-op `run --all`: {noop.wall:.1f} s (CPU {noop.cpu:.1f} s), runs {len(noop.runs)}, "
        f"model compiles {noop.compiles}" + (f"; each repeat: {walls['noop']} s" if len(results) > 1 else "")
    )
    if noop.runs:
        print(f"   {_phases(noop)}")
    timed = added["added"]
    print(
        f"{new} new posters → searchable and in the marts (`ingest --extract`): {timed.wall:.1f} s "
        f"(CPU {timed.cpu:.1f} s), model compiles {timed.compiles}; "
        f"searchable {added['searchable']}/{new}, in marts {added['marts']}/{new}"
        + (f"; each repeat: {walls['added']} s" if len(results) > 1 else "")
    )
    print(f"   {_phases(timed)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a demo home to copy (default: build a 200-poster one)")
    ap.add_argument("--new", type=int, default=2, help="new posters in the second measurement")
    ap.add_argument("--baseline", default="HEAD", help="git ref to compare with, or `none`")
    ap.add_argument("--repeat", type=int, default=1, help="measurements of each variant (medians reported)")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100_000, help="of the new posters")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = ap.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="small-changes-", dir="/tmp"))
    try:
        source = args.home.resolve() if args.home else scratch / "demo-home"
        if args.home is None:
            print(f"building a 200-poster demo home in {source} …", flush=True)
            _cli(source, None, "demo", "--offline")
        if not (source / "poster_assets.duckdb").exists():
            raise SystemExit(f"{source} has no database: `make demo` first (or leave out --home)")
        variants = {"this tree": ("after", None)}
        if args.baseline != "none":
            variants[f"baseline {args.baseline}"] = (
                "before",
                _checkout(args.baseline, scratch / "baseline-code"),
            )
        homes = {k: _prepare(tag, source, scratch, code, args.seed) for k, (tag, code) in variants.items()}
        results: dict[str, list[dict]] = {k: [] for k in variants}
        for r in range(args.repeat):
            # Alternating which goes first, so a slow spell of the machine does not favour one.
            for k in list(variants)[:: 1 if r % 2 == 0 else -1]:
                tag, code = variants[k]
                results[k].append(_measure(tag, homes[k], scratch, code, args.new, args.seed + 10 * r))
        for name, measured in results.items():
            _report(name, measured, args.new)
        if len(results) == 2:
            after, before = results.values()
            noop = _median(after, "noop")["noop"].wall / _median(before, "noop")["noop"].wall
            added = _median(after, "added")["added"].wall / _median(before, "added")["added"].wall
            print(
                f"\nratios of the medians (this tree / baseline): no-op {noop:.2f}, "
                f"{args.new} new posters {added:.2f}"
            )
        print(
            json.dumps(
                {
                    k: {
                        "noop_s": [round(m["noop"].wall, 1) for m in v],
                        "new_s": [round(m["added"].wall, 1) for m in v],
                    }
                    for k, v in results.items()
                }
            )
        )
    finally:
        if args.keep:
            print(f"scratch kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
