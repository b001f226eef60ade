"""FAISS poster indexes: spec choice, build, incremental add, save/load, recall."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from poster_assets.search.index import (
    IndexCorruptError,
    IndexMissingError,
    IndexSpec,
    PosterIndex,
    RawVectorFile,
    build_index,
    choose_index_spec,
    recall_at_k,
)


def _ids(n: int, offset: int = 0) -> list[str]:
    return [hashlib.sha256(str(i + offset).encode()).hexdigest() for i in range(n)]


def _clustered(n: int, dim: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """Unit vectors around fixed cluster centres; ``seed`` draws different points (queries)
    from the same distribution."""
    centres = np.random.default_rng(1234).standard_normal((clusters, dim)).astype(np.float32)
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(clusters, size=n)] + 0.8 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# A small IVF spec (PCA + IVF + SQ8 + exact re-ranking) to exercise the approximate path fast.
_SMALL_IVF = IndexSpec("ivf_sq8_refine", 64, "PCA32,IVF32,SQ8,RFlat", nlist=32, nprobe=32, k_factor=4)


def test_spec_is_exact_for_small_corpora_and_approximate_for_large():
    assert choose_index_spec(1_000, 1280).kind == "flat"
    assert choose_index_spec(49_999, 1280).factory == "Flat"
    medium = choose_index_spec(100_000, 1280)  # 0.5 GiB of floats: within the default budget
    assert medium.kind == "ivf_sq8_refine" and medium.factory.startswith("PCA256,IVF1264,")
    assert medium.nprobe > 0 and medium.train_size >= 39 * medium.nlist
    large = choose_index_spec(1_000_000, 1280)
    assert large.kind == "ivf_sq8_disk_rerank" and large.factory == "PCA256,IVF4000,SQ8"
    assert large.train_size >= 39 * large.nlist and large.reranks_from_disk
    assert large.search_params == "nprobe=16"  # k_factor is ours, not FAISS's, for this kind
    assert choose_index_spec(1_000_000, 1280, memory_budget=8 << 30).kind == "ivf_sq8_refine"
    assert IndexSpec.from_dict(json.loads(json.dumps(large.to_dict()))) == large


def test_flat_finds_itself_and_has_perfect_recall():
    x = _clustered(2_000, 64)
    ids = _ids(2_000)
    index = build_index(x, ids, choose_index_spec(len(x), 64), kind="poster", model_version="m@1")
    scores, hits = index.search(x[:5], 3)
    assert [h[0] for h in hits] == ids[:5]
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    assert recall_at_k(index, x, _clustered(200, 64, seed=1), k=10) == 1.0


def test_incremental_add_answers_like_a_rebuild():
    x, ids = _clustered(3_000, 64), _ids(3_000)
    queries = _clustered(50, 64, seed=2)
    rebuilt = build_index(x, ids, choose_index_spec(len(x), 64))
    # IVF trained on the first batch only, then grown; probing every list makes it exact.
    exhaustive_ivf = IndexSpec("ivf_flat", 64, "IVF32,Flat", nlist=32, nprobe=32)
    for spec in (choose_index_spec(2_000, 64), exhaustive_ivf):
        grown = build_index(x[:2_000], ids[:2_000], spec, target_recall=None)
        assert grown.add(x[2_000:2_500], ids[2_000:2_500]) == 500
        assert grown.add(x[:2_600], ids[:2_600]) == 100  # already indexed ones are skipped
        assert grown.add(x[2_600:], ids[2_600:]) == 400
        assert grown.ids == ids
        s1, h1 = grown.search(queries, 10)
        s2, h2 = rebuilt.search(queries, 10)
        assert h1 == h2
        np.testing.assert_allclose(s1, s2, atol=1e-5)


@pytest.mark.slow  # trains IVF indexes on 60k vectors
def test_chosen_approximate_specs_reach_high_recall():
    x = _clustered(60_000, 64, clusters=300)
    queries = _clustered(300, 64, seed=3, clusters=300)
    for budget in (1 << 30, 1):  # float re-ranking fits / does not fit the memory budget
        spec = choose_index_spec(len(x), 64, memory_budget=budget)
        assert spec.kind == ("ivf_sq8_refine" if budget > 1 else "ivf_sq8_disk_rerank")
        index = build_index(x, _ids(len(x)), spec)
        assert index.spec.nprobe >= spec.nprobe  # tuned on indexed rows
        assert recall_at_k(index, x, queries, k=10) >= 0.9


_SMALL_DISK = IndexSpec("ivf_sq8_disk_rerank", 64, "PCA32,IVF32,SQ8", nlist=32, nprobe=32, k_factor=4)


def test_disk_rerank_matches_exact_and_survives_save_load_and_adds(tmp_path):
    x, ids = _clustered(1_500, 64), _ids(1_500)
    queries = _clustered(30, 64, seed=7)
    index = build_index(x[:1_000], ids[:1_000], _SMALL_DISK, target_recall=None)
    assert index.add(x[1_000:], ids[1_000:]) == 500
    exact = build_index(x, ids, choose_index_spec(len(x), 64))
    s1, h1 = index.search(queries, 10)
    s0, h0 = exact.search(queries, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(h0, h1, strict=True)]) >= 0.95
    np.testing.assert_allclose(s1, s0, atol=2e-3)  # float16 re-ranking: cosine to ~1e-3

    index.save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert meta["files"]["vectors.f16"]["bytes"] == 1_500 * 64 * 2
    loaded = PosterIndex.load(tmp_path)
    s2, h2 = loaded.search(queries, 10)
    assert h2 == h1
    np.testing.assert_array_equal(s2, s1)
    # Rows added after loading are re-ranked from RAM, then saved with the mapped ones.
    more, more_ids = _clustered(20, 64, seed=8), _ids(20, offset=1_500)
    assert loaded.add(more, more_ids) == 20
    assert [h[0] for h in loaded.search(more[:3], 2)[1]] == more_ids[:3]
    loaded.save(tmp_path)
    again = PosterIndex.load(tmp_path)
    assert again.count == 1_520 and [h[0] for h in again.search(more[:3], 2)[1]] == more_ids[:3]

    scores, hits = build_index(x[:40], ids[:40], _SMALL_DISK).search(x[:1], 50)  # fewer than k
    assert len(hits[0]) == 40 and np.isinf(scores[0, 40:]).all()

    data = tmp_path / json.loads((tmp_path / "meta.json").read_text())["data"]
    blob = (data / "vectors.f16").read_bytes()
    (data / "vectors.f16").write_bytes(blob[:-2] + b"\x00\x7c")
    with pytest.raises(IndexCorruptError, match="checksum"):
        PosterIndex.load(tmp_path)
    (data / "vectors.f16").write_bytes(blob[:-2])
    with pytest.raises(IndexCorruptError):
        PosterIndex.load(tmp_path, verify=False)


@pytest.mark.slow  # trains IVF on 60k vectors read from a file
def test_index_over_budget_built_from_a_file_keeps_recall_and_survives_save_load(tmp_path):
    # The type chosen above the memory budget (1M x 1280 in production), built the way a
    # corpus larger than RAM is: from float32 rows on disk, a chunk at a time.
    dim = 128
    x, ids = _clustered(60_000, dim, clusters=300), _ids(60_000)
    queries = _clustered(300, dim, seed=5, clusters=300)
    x.tofile(tmp_path / "vectors.f32")
    source = RawVectorFile(tmp_path / "vectors.f32", dim)
    assert source.shape == x.shape
    np.testing.assert_array_equal(source.rows(59_990, 70_000), x[59_990:])
    spec = choose_index_spec(len(x), dim, memory_budget=1)
    assert spec.kind == "ivf_sq8_disk_rerank" and spec.factory == "IVF979,SQ8"
    index = build_index(source, ids, spec, kind="poster", model_version="m@1")
    assert index.ids == ids
    recall = recall_at_k(index, x, queries, k=10)
    assert recall >= 0.95
    assert recall_at_k(index, source, queries, k=10) == recall

    index.save(tmp_path / "idx")
    loaded = PosterIndex.load(tmp_path / "idx")
    assert (loaded.spec, loaded.ids) == (index.spec, ids)
    s1, h1 = index.search(queries, 10)
    s2, h2 = loaded.search(queries, 10)
    assert h1 == h2
    np.testing.assert_array_equal(s1, s2)


def test_save_load_round_trip(tmp_path):
    x, ids = _clustered(1_500, 64), _ids(1_500)
    queries = _clustered(20, 64, seed=4)
    index = build_index(x, ids, _SMALL_IVF, kind="foreground", model_version="fg@1")
    index.save(tmp_path / "idx")
    loaded = PosterIndex.load(tmp_path / "idx")
    assert (loaded.kind, loaded.model_version, loaded.spec, loaded.ids) == (
        "foreground",
        "fg@1",
        _SMALL_IVF,
        ids,
    )
    s1, h1 = index.search(queries, 5)
    s2, h2 = loaded.search(queries, 5)
    assert h1 == h2
    np.testing.assert_allclose(s1, s2, atol=1e-6)
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["count"] == 1_500 and meta["dim"] == 64 and len(meta["files"]["index.faiss"]["sha256"]) == 64


def test_saving_again_switches_atomically_and_prunes_old_generations(tmp_path):
    x, ids = _clustered(900, 64), _ids(900)
    index = build_index(x[:300], ids[:300], choose_index_spec(300, 64))
    for end in (300, 600, 900):
        index.add(x[:end], ids[:end])
        index.save(tmp_path)
    assert PosterIndex.load(tmp_path).count == 900
    assert len(list(tmp_path.glob("data-*"))) == 2  # current and previous
    assert not list(tmp_path.glob(".tmp-*"))


def test_missing_and_corrupt_files_raise_clear_errors(tmp_path):
    with pytest.raises(IndexMissingError):
        PosterIndex.load(tmp_path / "nothing")
    x, ids = _clustered(500, 64), _ids(500)
    build_index(x, ids, choose_index_spec(500, 64)).save(tmp_path / "idx")
    data = next((tmp_path / "idx").glob("data-*"))

    blob = (data / "index.faiss").read_bytes()
    (data / "index.faiss").write_bytes(blob[:-1] + bytes([blob[-1] ^ 0xFF]))
    with pytest.raises(IndexCorruptError, match="checksum"):
        PosterIndex.load(tmp_path / "idx")
    (data / "index.faiss").write_bytes(blob[:100])
    with pytest.raises(IndexCorruptError):
        PosterIndex.load(tmp_path / "idx", verify=False)
    (data / "index.faiss").write_bytes(blob)
    assert PosterIndex.load(tmp_path / "idx").count == 500

    (data / "ids.txt").unlink()
    with pytest.raises(IndexMissingError):
        PosterIndex.load(tmp_path / "idx")
    (tmp_path / "idx" / "meta.json").write_text("{not json")
    with pytest.raises(IndexCorruptError):
        PosterIndex.load(tmp_path / "idx")


def test_id_map_and_index_must_agree(tmp_path):
    x, ids = _clustered(100, 64), _ids(100)
    build_index(x, ids, choose_index_spec(100, 64)).save(tmp_path)
    meta = json.loads((tmp_path / "meta.json").read_text())
    meta["count"] = 99
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(IndexCorruptError, match="id map"):
        PosterIndex.load(tmp_path)


def test_search_with_fewer_posters_than_k_and_rebuild_hint():
    x, ids = _clustered(3, 64), _ids(3)
    index = build_index(x, ids, choose_index_spec(3, 64))
    scores, hits = index.search(x[0], 5)
    assert len(hits[0]) == 3 and np.isinf(scores[0, 3:]).all()
    assert not index.should_rebuild()
    with pytest.raises(ValueError):
        index.add(np.zeros((2, 32), np.float32), _ids(2, 10))


def _damage_meta(folder, how: str) -> None:
    meta = folder / "meta.json"
    if how == "binary garbage":
        meta.write_bytes(b"\x00\xff\xfe garbage \x80" * 40)
    elif how == "cut JSON":
        meta.write_text(meta.read_text()[:57])
    elif how == "a JSON list":
        meta.write_text("[1, 2, 3]")
    elif how == "a folder":
        meta.unlink()
        (meta / "inside").mkdir(parents=True)
    elif how == "data not a name":
        meta.write_text(json.dumps({"data": {"x": 1}, "files": []}))
    elif how == "the index folder is a file":
        import shutil

        shutil.rmtree(folder)
        folder.write_bytes(b"not a folder")


@pytest.mark.parametrize(
    "how",
    [
        "binary garbage",
        "cut JSON",
        "a JSON list",
        "a folder",
        "data not a name",
        "the index folder is a file",
    ],
)
def test_a_damaged_meta_json_never_blocks_saving_a_rebuilt_index(tmp_path, how: str) -> None:
    # A damaged index is what a rebuild repairs: the save that ends the rebuild must not read
    # the damaged meta.json first and fail on it (`poster-assets run --all` failed every time).
    x, ids = _clustered(200, 64), _ids(200)
    folder = tmp_path / "foreground"
    build_index(x[:100], ids[:100], choose_index_spec(100, 64), kind="foreground").save(folder)
    _damage_meta(folder, how)
    if how != "the index folder is a file":
        with pytest.raises(IndexCorruptError):
            PosterIndex.load(folder)

    build_index(x, ids, choose_index_spec(200, 64), kind="foreground", model_version="m@2").save(folder)
    loaded = PosterIndex.load(folder)
    assert (loaded.count, loaded.model_version, loaded.ids) == (200, "m@2", ids)
    assert [h[0] for h in loaded.search(x[:3], 1)[1]] == ids[:3]
    assert len(list(folder.glob("data-*"))) == 1  # nothing of the damaged generation is kept
    assert not list(folder.glob(".tmp-*"))
