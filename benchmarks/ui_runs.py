"""What the Dagster UI costs a person: seconds from `make ui` to a loaded code location, and
UI-launched runs on an existing home (the demo's, by default), each split into the run's own
step time and the overhead around it (queue, run process start-up, imports).

    .venv/bin/python benchmarks/ui_runs.py [--home poster_data] [--new 2]

Runs, in order: corpus_job with nothing stale; then `poster-assets ingest` of NEW posters the
demo generator makes (a new batch, raw_posters only), batch_job for that batch and corpus_job,
both launched in the UI. The home is changed (the new batch stays; `batches abandon` drops it).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poster_assets_tests.ui.server import UI, poster_assets, started_ui  # noqa: E402

STEPS = """
query Steps($id: ID!) {
  runOrError(runId: $id) { ... on Run { startTime endTime stepStats { stepKey startTime endTime } } }
}"""


def _timed_launch(ui: UI, job: str, partition: str | None = None) -> dict[str, float]:
    run_id, status, wall = ui.launch(job, partition)
    if status != "SUCCESS":
        raise SystemExit(f"{job} ended {status}: see run {run_id} in {ui.url}")
    run = ui.graphql(STEPS, {"id": run_id})["runOrError"]
    steps = sum((s["endTime"] or 0) - (s["startTime"] or 0) for s in run["stepStats"])
    return {"wall": wall, "run": run["endTime"] - run["startTime"], "steps": steps}


def _row(name: str, t: dict[str, float]) -> str:
    overhead = t["wall"] - t["steps"]
    return (
        f"{name:<42} {t['wall']:6.1f} s   steps {t['steps']:5.1f} s   "
        f"overhead {overhead:5.1f} s ({overhead / t['wall']:.0%})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, default=ROOT / "poster_data")
    ap.add_argument("--new", type=int, default=2, help="new posters in the second measurement")
    args = ap.parse_args()
    home = args.home.resolve()
    if not (home / "poster_assets.duckdb").exists():
        raise SystemExit(f"{home} has no database: `make demo` first (or pass --home)")
    with started_ui(home) as ui:
        print(f"make ui → code location loaded          {ui.seconds_to_load:6.1f} s")
        print(_row("corpus_job, nothing stale", _timed_launch(ui, "corpus_job")))
        with tempfile.TemporaryDirectory() as tmp:
            seed = str(int(time.time()))  # posters no batch holds yet
            folder = Path(tmp) / f"new_{seed}"
            poster_assets(home, "demo-corpus", str(folder), "--n", str(args.new), "--seed", seed)
            t0 = time.perf_counter()
            out = poster_assets(home, "ingest", str(folder)).stdout
            ingest_s = time.perf_counter() - t0
        batch = next(w.rstrip(":") for line in out.splitlines() for w in line.split() if w.startswith("cli-"))
        print(f"{'poster-assets ingest (raw_posters, CLI)':<42} {ingest_s:6.1f} s")
        batch_t = _timed_launch(ui, "batch_job", batch)
        print(_row(f"batch_job, {args.new} new posters", batch_t))
        corpus_t = _timed_launch(ui, "corpus_job")
        print(_row(f"corpus_job after {args.new} new posters", corpus_t))
        total = ingest_s + batch_t["wall"] + corpus_t["wall"]
        print(f"{args.new} new posters → searchable and in the marts: {total:.1f} s")


if __name__ == "__main__":
    main()
