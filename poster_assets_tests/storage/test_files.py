"""What interrupted writers leave behind, and sweeping it without touching a live writer's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from poster_assets.storage.files import sweep_temporaries

HOUR = 3600.0


def _age(path: Path, seconds: float) -> None:
    """Make ``path`` (and everything under it) look untouched for ``seconds``."""
    past = time.time() - seconds
    paths = [path, *path.rglob("*")] if path.is_dir() else [path]
    for p in paths:
        os.utime(p, (past, past), follow_symlinks=False)


def _leftover_dir(parent: Path, name: str, size: int) -> Path:
    folder = parent / name
    folder.mkdir(parents=True)
    (folder / "index.faiss").write_bytes(b"x" * size)
    (folder / "ids.txt").write_text("a\nb\n")
    return folder


def test_stale_leftovers_go_fresh_ones_and_real_files_stay(tmp_path: Path) -> None:
    home = tmp_path / "home"
    stale_dir = _leftover_dir(home / "indexes" / "poster", ".tmp-k3j2abcd", 1_000_000)
    stale_file = home / "blobs" / "thumbs" / "ab" / ".tmp-ab12.jpg.x8y7"
    stale_file.parent.mkdir(parents=True)
    stale_file.write_bytes(b"y" * 1000)
    stale_ssl = _leftover_dir(home / "models" / "ssl", ".tmp-q9", 10)
    # A writer filling a folder right now: the folder itself is old, a file in it is not.
    live_dir = _leftover_dir(home / "indexes" / "foreground", ".tmp-live", 10)
    fresh_file = home / "batches" / ".tmp-cli-1.json.abc"
    fresh_file.parent.mkdir(parents=True)
    fresh_file.write_text("{}")
    real = home / "blobs" / "thumbs" / "ab" / "ab12.jpg"
    real.write_bytes(b"poster")
    not_ours = home / "inbox" / ".tmp-someone-elses"  # outside the folders writers use
    not_ours.parent.mkdir(parents=True)
    not_ours.write_text("user data")
    for p in (stale_dir, stale_file, stale_ssl, real, not_ours, live_dir):
        _age(p, 2 * HOUR)
    os.utime(live_dir / "index.faiss")  # written to just now

    report = sweep_temporaries(home)

    assert set(report.removed) == {stale_dir, stale_file, stale_ssl}
    assert report.bytes == 1_000_000 + len("a\nb\n") + 1000 + 10 + len("a\nb\n")
    assert report.kept_fresh == 2
    assert not stale_dir.exists() and not stale_file.exists() and not stale_ssl.exists()
    assert live_dir.exists() and fresh_file.exists() and real.exists() and not_ours.exists()
    assert sweep_temporaries(home).removed == []


def test_the_age_limit_is_the_callers(tmp_path: Path) -> None:
    leftover = _leftover_dir(tmp_path / "blobs", ".tmp-1", 5)
    _age(leftover, 120)
    assert sweep_temporaries(tmp_path).removed == []
    assert sweep_temporaries(tmp_path, older_than_s=60).removed == [leftover]


def test_a_hard_linked_leftover_frees_no_bytes_and_its_other_name_stays(tmp_path: Path) -> None:
    # BlobStore.store_file links the ingested file under a .tmp- name before renaming it.
    source = tmp_path / "my_posters" / "poster.jpg"
    source.parent.mkdir()
    source.write_bytes(b"z" * 500)
    link = tmp_path / "home" / "blobs" / "originals" / "ab" / ".tmp-123-ab.jpg"
    link.parent.mkdir(parents=True)
    os.link(source, link)
    _age(link, 2 * HOUR)
    report = sweep_temporaries(tmp_path / "home")
    assert report.removed == [link] and report.bytes == 0
    assert source.read_bytes() == b"z" * 500


_KILLED_WRITER = """
import sys, time
from pathlib import Path
from poster_assets.storage.files import atomic_dir

with atomic_dir(Path(sys.argv[1])) as tmp:
    (tmp / "index.faiss").write_bytes(b"1" * 4096)
    Path(sys.argv[2]).touch()
    time.sleep(600)
"""


def test_a_killed_writers_folder_is_kept_while_fresh_and_swept_once_stale(tmp_path: Path) -> None:
    home = tmp_path / "home"
    target = home / "indexes" / "poster" / "gen-1"
    started = tmp_path / "started"
    writer = subprocess.Popen([sys.executable, "-c", _KILLED_WRITER, str(target), str(started)])
    try:
        deadline = time.monotonic() + 60
        while not started.exists():
            assert writer.poll() is None and time.monotonic() < deadline, "the writer never started"
            time.sleep(0.05)
        # While it runs, its temporary is fresh: a sweep (another process starting) keeps it.
        (leftover,) = target.parent.glob(".tmp-*")
        assert sweep_temporaries(home).removed == []
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(30)
    finally:
        if writer.poll() is None:
            writer.kill()
    assert leftover.exists() and not target.exists()  # killed: nothing cleaned up
    _age(leftover, 2 * HOUR)
    report = sweep_temporaries(home)
    assert report.removed == [leftover] and report.bytes == 4096
    assert not leftover.exists()
