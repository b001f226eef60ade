"""Stored originals belong to the store: a copy whose bytes are the ones its poster id names."""

import hashlib
import os
import threading
from pathlib import Path

import pytest

from poster_assets.defs.resources import PosterStore
from poster_assets.demo.bad_inputs import write_bad_inputs
from poster_assets.ingest.batches import plan_batch
from poster_assets.ingest.ingest import ingest_batch
from poster_assets.storage.blobs import BlobStore, ContentChangedError, copy_hashed
from poster_assets.storage.files import file_sha256


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_overwriting_an_ingested_file_in_place_leaves_the_stored_original_alone(
    tmp_path: Path, store: PosterStore
) -> None:
    write_bad_inputs(tmp_path / "in")
    manifest, _ = plan_batch(store.batches_dir, tmp_path / "in")
    ingest_batch(store.db, store.blobs, manifest)
    rows = store.db.query("SELECT poster_id, source_uri, original_path FROM raw_posters WHERE status = 'ok'")
    assert rows
    for poster_id, source, original in rows:
        # The user edits their file in place (same inode: what a hard link would share).
        with open(source, "r+b") as fh:
            fh.write(b"\x00" * 64)
        stored = store.blobs.abspath(original)
        assert file_sha256(stored, use_cache=False) == poster_id
        assert os.stat(stored).st_ino != os.stat(source).st_ino


def test_store_file_keeps_only_the_bytes_the_id_names(tmp_path: Path) -> None:
    blobs = BlobStore(tmp_path / "home")
    source = tmp_path / "poster.jpg"
    source.write_bytes(b"the bytes that were hashed")
    poster_id = _sha(source.read_bytes())

    # Changed between hashing and copying: refused, nothing stored, no temporary left.
    source.write_bytes(b"other bytes written meanwhile")
    with pytest.raises(ContentChangedError, match="changed after it was hashed"):
        blobs.store_file("originals", poster_id, ".jpg", source, expected_sha256=poster_id)
    folder = blobs.abspath(blobs.relpath("originals", poster_id, ".jpg")).parent
    assert not any(folder.iterdir())

    source.write_bytes(b"the bytes that were hashed")
    rel = blobs.store_file("originals", poster_id, ".jpg", source, expected_sha256=poster_id)
    stored = blobs.abspath(rel)
    assert _sha(stored.read_bytes()) == poster_id and stored.stat().st_nlink == 1


def test_store_file_replaces_an_original_that_no_longer_matches_its_id(tmp_path: Path) -> None:
    """An original stored as a hard link by an older version, whose source was overwritten since."""
    blobs = BlobStore(tmp_path / "home")
    data = b"poster bytes"
    poster_id = _sha(data)
    user_file = tmp_path / "user.jpg"
    user_file.write_bytes(data)
    stored = blobs.abspath(blobs.relpath("originals", poster_id, ".jpg"))
    stored.parent.mkdir(parents=True)
    os.link(user_file, stored)
    with open(user_file, "r+b") as fh:
        fh.write(b"EDITED")
    assert _sha(stored.read_bytes()) != poster_id

    backup = tmp_path / "backup.jpg"  # the same poster ingested again from another copy
    backup.write_bytes(data)
    blobs.store_file("originals", poster_id, ".jpg", backup, expected_sha256=poster_id)
    assert stored.read_bytes() == data and stored.stat().st_nlink == 1
    assert user_file.read_bytes().startswith(b"EDITED")


def test_copy_hashed_hashes_what_it_stored_from_files_and_streams(tmp_path: Path) -> None:
    data = os.urandom(3 << 20)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    assert copy_hashed(source, tmp_path / "copy.bin") == _sha(data)
    assert (tmp_path / "copy.bin").read_bytes() == data

    # A pipe cannot be cloned nor copied in the kernel: the streamed copy, hashed on the way.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(data))
    writer.start()
    assert copy_hashed(fifo, tmp_path / "streamed.bin") == _sha(data)
    writer.join()
    assert (tmp_path / "streamed.bin").read_bytes() == data
