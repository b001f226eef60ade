"""The package's layers, as ``[tool.importlinter]`` in pyproject.toml declares them: imports run
only downwards (storage / models / vision <- extract <- embed <- search, ssl; defs and the CLI
on top) and nothing below ``defs/`` imports Dagster."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout
