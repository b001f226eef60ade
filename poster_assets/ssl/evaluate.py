"""Does the SSL encoder beat what we already have? Held-out genre retrieval and a title-
placement probe, for the SSL embedding, the ImageNet EfficientNet-Lite0 features and raw pixels.

Split: a poster is held out when the first 8 hex digits of sha256(poster_id) fall in the
lowest ``holdout`` share, so the split never depends on order or on which posters exist.
Train on the train split only (``split_items``) for the numbers to mean anything.

Metrics, per method and input (``subject`` crop as the ``foreground`` embedding kind sees it,
``poster`` the whole poster), held-out posters as queries against the train posters:

- ``knn_genre_acc``: majority primary genre of the k nearest (cosine) train posters.
- ``precision_at_10``: share of the 10 nearest train posters with the query's genre.
- ``placement_probe_acc``: logistic regression on train embeddings -> title placement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from poster_assets.ssl.augment import subject_view
from poster_assets.ssl.config import TrainConfig
from poster_assets.ssl.labels import TrainItem

INPUTS = ("subject", "poster")
EmbedFn = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class EvalRow:
    method: str
    input: str
    dim: int
    knn_genre_acc: float
    precision_at_10: float
    placement_probe_acc: float


def is_held_out(poster_id: str, holdout: float = 0.3) -> bool:
    return int(hashlib.sha256(poster_id.encode()).hexdigest()[:8], 16) / 2**32 < holdout


def split_items(items: Sequence[TrainItem], holdout: float = 0.3) -> tuple[list[TrainItem], list[TrainItem]]:
    """(train, held-out), deterministic by poster id."""
    test = [i for i in items if is_held_out(i.poster_id, holdout)]
    train = [i for i in items if not is_held_out(i.poster_id, holdout)]
    return train, test


def input_images(items: Sequence[TrainItem]) -> dict[str, list[np.ndarray]]:
    """Each item's subject crop and whole poster, decoded once."""
    out: dict[str, list[np.ndarray]] = {k: [] for k in INPUTS}
    for item in items:
        rgb = item.load_rgb()
        out["poster"].append(rgb)
        out["subject"].append(subject_view(item, rgb, item.load_foreground()))
    return out


def knn_genre(
    train: np.ndarray, train_genres: Sequence[str], test: np.ndarray, test_genres: Sequence[str], k: int = 5
) -> tuple[float, float]:
    """(kNN accuracy, precision@10) of held-out queries against the train gallery (unit vectors)."""
    sims = test @ train.T
    order = np.argsort(-sims, axis=1, kind="stable")
    hits, precisions = 0, []
    for q, genre in enumerate(test_genres):
        votes: Counter[str] = Counter()
        for j in order[q, :k]:
            votes[train_genres[j]] += 1.0 + 1e-3 * sims[q, j]  # ties go to the closer neighbours
        hits += votes.most_common(1)[0][0] == genre
        top = order[q, :10]
        precisions.append(np.mean([train_genres[j] == genre for j in top]))
    return hits / max(1, len(test_genres)), float(np.mean(precisions)) if precisions else 0.0


def linear_probe(train: np.ndarray, y_train: Sequence[str], test: np.ndarray, y_test: Sequence[str]) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(set(y_train)) < 2:
        return float(np.mean([y == y_train[0] for y in y_test]))
    scaler = StandardScaler().fit(train)
    clf = LogisticRegression(max_iter=2000, C=1.0).fit(scaler.transform(train), list(y_train))
    return float(np.mean(clf.predict(scaler.transform(test)) == np.asarray(y_test)))


def evaluate_embeddings(
    train_items: Sequence[TrainItem],
    test_items: Sequence[TrainItem],
    methods: dict[str, EmbedFn],
    k: int = 5,
) -> list[EvalRow]:
    """One row per (method, input), plus a ``majority`` row: what always guessing the most
    common train label scores."""
    train_in, test_in = input_images(train_items), input_images(test_items)
    g_train = [i.primary_genre for i in train_items]
    g_test = [i.primary_genre for i in test_items]
    p_train = [i.title_placement for i in train_items]
    p_test = [i.title_placement for i in test_items]
    rows = []
    for name, embed in methods.items():
        for kind in INPUTS:
            a, b = embed(train_in[kind]), embed(test_in[kind])
            acc, p10 = knn_genre(a, g_train, b, g_test, k)
            rows.append(EvalRow(name, kind, int(a.shape[1]), acc, p10, linear_probe(a, p_train, b, p_test)))
    top_genre = Counter(g_train).most_common(1)[0][0]
    top_place = Counter(p_train).most_common(1)[0][0]
    rows.append(
        EvalRow(
            "majority",
            "-",
            0,
            float(np.mean([g == top_genre for g in g_test])),
            float(np.mean([g == top_genre for g in g_test])),
            float(np.mean([p == top_place for p in p_test])),
        )
    )
    return rows


def default_methods(
    ssl_embedder=None, imagenet: bool = True, models_dir: Path | None = None
) -> dict[str, EmbedFn]:
    """The SSL IR (when given), ImageNet EfficientNet-Lite0 (weights from ``models_dir``,
    default the home's) and the raw-pixel baseline."""
    from poster_assets.embed.kinds import raw_pixel_embedding

    methods: dict[str, EmbedFn] = {}
    if ssl_embedder is not None:
        methods["ssl"] = ssl_embedder.embed
    if imagenet:
        from poster_assets.models.hub import Models

        methods["imagenet"] = Models(models_dir).efficientnet().embed
    methods["pixels"] = lambda ims: np.stack([raw_pixel_embedding(im) for im in ims])
    return methods


def format_table(rows: Sequence[EvalRow]) -> str:
    lines = [
        "| method | input | dim | kNN genre acc | precision@10 | placement probe acc |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r.method} | {r.input} | {r.dim} | {r.knn_genre_acc:.3f} | {r.precision_at_10:.3f} "
            f"| {r.placement_probe_acc:.3f} |"
        )
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    """The command line of ``main``; every training default is ``TrainConfig``'s."""
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--home", default=None, help="store home (default $POSTER_ASSETS_HOME)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=TrainConfig.steps)
    ap.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    ap.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    ap.add_argument("--lr", type=float, default=TrainConfig.lr)
    ap.add_argument("--aux-weight", type=float, default=TrainConfig.aux_weight)
    ap.add_argument("--seed", type=int, default=TrainConfig.seed)
    ap.add_argument("--curriculum", action=argparse.BooleanOptionalAction, default=TrainConfig.curriculum)
    ap.add_argument("--holdout", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default=TrainConfig.device)
    return ap


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig the parsed command line asks for."""
    return TrainConfig(
        seed=args.seed,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        image_size=args.image_size,
        aux_weight=args.aux_weight,
        curriculum=args.curriculum,
        device=args.device,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Train on the train split of a store, export, evaluate on the held-out split:
    ``python -m poster_assets.ssl.evaluate --home /tmp/ssl_home --out /tmp/ssl_run``."""
    import torch

    from poster_assets.models.ssl_encoder import SslEmbedder
    from poster_assets.ssl.export import export_openvino
    from poster_assets.ssl.labels import load_training_items
    from poster_assets.ssl.train import plot_losses, train_encoder
    from poster_assets.storage.store import Store

    args = parser().parse_args(argv)
    torch.set_num_threads(args.threads)

    store = Store.at(args.home)
    items = load_training_items(store)
    train, test = split_items(items, args.holdout)
    print(f"{len(items)} posters (labels from marts.ssl_labels): {len(train)} train, {len(test)} held out")
    config = train_config(args)

    def _report(step: int, values: dict[str, float]) -> None:
        if step % 25 == 0 or step == config.steps - 1:
            print(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in values.items()), flush=True)

    result = train_encoder(train, config, args.out, progress=_report, models_dir=store.models_dir)
    per_step = result.seconds / max(1, args.steps)
    print(f"trained {args.steps} steps in {result.seconds:.1f} s ({per_step:.2f} s/step)")
    plot_losses(result).save(args.out / "losses.png")
    ir = export_openvino(result.checkpoint_path, args.out)
    rows = evaluate_embeddings(train, test, default_methods(SslEmbedder(ir), models_dir=store.models_dir))
    table = format_table(rows)
    print(table)
    (args.out / "evaluation.md").write_text(table + "\n", encoding="utf-8")
    (args.out / "result.json").write_text(
        json.dumps(
            {
                "config": asdict(config),
                "data_version": result.data_version,
                "seconds": result.seconds,
                "simsiam_loss": result.simsiam_loss,
                "aux_loss": result.aux_loss,
                "output_std": result.output_std,
                "rows": [asdict(r) for r in rows],
            },
            indent=1,
        ),
        encoding="utf-8",
    )


if __name__ == "__main__":
    main()
