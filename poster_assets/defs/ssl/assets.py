"""The project's own encoder (``poster_assets.ssl``), trained over the whole corpus.

Unpartitioned and in no batch or corpus job: training takes minutes, so it runs on request
(``ssl_job``, ``poster-assets train-encoder``). A healthy encoder becomes current by rewriting
``<models>/ssl/current.json``; ``foreground_embeddings`` then adds the ``ssl`` kind.
"""

# No `from __future__ import annotations`: Dagster reads SslConfig from the real annotations.
import math
import shutil
import tempfile
import time
from pathlib import Path

import dagster as dg
import numpy as np

from poster_assets.defs.extract.assets import foreground_masks, layer_masks
from poster_assets.defs.extract.resources import ModelsResource
from poster_assets.defs.previews import image_markdown
from poster_assets.extract import embed_steps
from poster_assets.storage.resource import PosterStore

SSL_LABELS_KEY = dg.AssetKey(["marts", "ssl_labels"])
HEALTH_CHECK = "encoder_not_collapsed"
# Posters the health check embeds to measure the spread of the exported encoder's outputs.
_PROBE_POSTERS = 32
_MIN_POSTERS = 2
_LOG_EVERY = 50


class SslConfig(dg.Config):
    """Training settings; the rest of ``TrainConfig`` keeps its defaults."""

    steps: int = 300
    batch_size: int = 16
    image_size: int = 96
    seed: int = 0
    lr: float = 0.05
    aux_weight: float = 0.3
    device: str = "auto"  # cuda when present, else cpu


def _train_config(config: SslConfig):
    from poster_assets.ssl import TrainConfig

    # "warn": a collapsed run still materializes (with its curves) but never becomes current.
    return TrainConfig(
        seed=config.seed,
        steps=config.steps,
        batch_size=config.batch_size,
        lr=config.lr,
        image_size=config.image_size,
        aux_weight=config.aux_weight,
        device=config.device,
        on_collapse="warn",
    )


def _last(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return round(finite[-1], 5) if finite else None


@dg.asset(
    group_name="ssl",
    deps=[SSL_LABELS_KEY, layer_masks, foreground_masks],
    kinds={"pytorch", "openvino"},
    code_version="ssl-encoder-v1",
)
def poster_encoder(
    context: dg.AssetExecutionContext, config: SslConfig, store: PosterStore, models: ModelsResource
) -> dg.MaterializeResult:
    """A SimSiam encoder with auxiliary structure labels (title placement, layer count, text),
    trained on every labelled poster, exported to OpenVINO IR under `<models>/ssl/` and, when
    it did not collapse, made current through `<models>/ssl/current.json`."""
    # Imported here: torch is heavy, and only training needs it.
    from poster_assets.ssl import export_openvino, load_training_items, plot_losses, train_encoder
    from poster_assets.ssl.export import MODEL_NAME, file_sha256
    from poster_assets.ssl.train import CHECKPOINT_NAME

    items = load_training_items(store.db, store.blobs)
    if len(items) < _MIN_POSTERS:
        raise dg.Failure(
            f"{len(items)} poster(s) have complete labels; training needs at least {_MIN_POSTERS}: "
            "materialize the extractors (and dbt) for some batches first"
        )
    cfg = _train_config(config)
    out = embed_steps.ssl_dir(models.path)
    out.mkdir(parents=True, exist_ok=True)
    context.log.info(f"training on {len(items)} posters ({items[0].labels_source}), {cfg.resolved_device()}")
    t0 = time.perf_counter()

    def progress(step: int, losses: dict[str, float]) -> None:
        if (step + 1) % _LOG_EVERY == 0:
            context.log.info(
                f"step {step + 1}/{cfg.steps}: " + ", ".join(f"{k} {v:.4f}" for k, v in losses.items())
            )

    run_dir = Path(tempfile.mkdtemp(prefix=".run-", dir=out))
    try:
        result = train_encoder(items, cfg, run_dir, progress=progress)
        ir_path = export_openvino(result.checkpoint_path, out)
        # One folder per encoder (named by the checkpoint's hash): the IR and its checkpoint.
        checkpoint = ir_path.parent / CHECKPOINT_NAME
        shutil.move(result.checkpoint_path, checkpoint)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    version = f"{MODEL_NAME}@{file_sha256(checkpoint)[:12]}"  # SslEmbedder.version of the IR
    healthy = not result.collapsed and all(math.isfinite(v) for v in result.total_loss)
    if healthy:
        embed_steps.write_ssl_pointer(models.path, ir_path, version, result.data_version, checkpoint)
    else:
        context.log.warning("the encoder collapsed or diverged: current.json left as it was")
    return dg.MaterializeResult(
        metadata={
            "version": version,
            "data_version": result.data_version,
            "posters": len(items),
            "labels_source": items[0].labels_source,
            "device": cfg.resolved_device(),
            "steps": len(result.total_loss),
            "final_simsiam_loss": _last(result.simsiam_loss),
            "final_aux_loss": _last(result.aux_loss),
            "final_total_loss": _last(result.total_loss),
            "output_std": _last(result.output_std),
            "embedding_std": _last(result.embedding_std),
            "healthy_std": round(result.healthy_std, 5),
            "collapsed": result.collapsed,
            "made_current": healthy,
            "seconds": round(time.perf_counter() - t0, 1),
            "train_seconds": round(result.seconds, 1),
            "ir_path": dg.MetadataValue.path(str(ir_path)),
            "checkpoint": dg.MetadataValue.path(str(checkpoint)),
            "loss_curves": image_markdown(plot_losses(result), "loss curves"),
        },
        data_version=dg.DataVersion(version),
    )


@dg.asset_check(asset=poster_encoder, name=HEALTH_CHECK, blocking=True)
def encoder_health_check(context: dg.AssetCheckExecutionContext, store: PosterStore) -> dg.AssetCheckResult:
    """The encoder just exported has finite weights, and its IR gives finite, spread-out vectors
    for up to 32 posters: mean per-dimension std at least `collapse_ratio` (0.1) of the healthy
    1/sqrt(128). Blocking: a collapsed encoder stops the embeddings downstream in the run."""
    import torch

    from poster_assets.ssl import SslEmbedder, TrainConfig, load_checkpoint, load_training_items

    event = context.instance.get_latest_materialization_event(poster_encoder.key)
    meta = event.asset_materialization.metadata if event and event.asset_materialization else {}
    if "ir_path" not in meta:
        return dg.AssetCheckResult(passed=False, metadata={"problem": "no materialization with an ir_path"})
    ir_path, checkpoint = Path(meta["ir_path"].value), Path(meta["checkpoint"].value)
    model, _, _ = load_checkpoint(checkpoint)
    bad_tensors = [
        name
        for name, t in model.state_dict().items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    items = load_training_items(store.db, store.blobs)
    probe = [items[i] for i in np.linspace(0, len(items) - 1, min(_PROBE_POSTERS, len(items))).astype(int)]
    vectors = SslEmbedder(ir_path).embed([it.load_rgb() for it in probe])
    finite = bool(np.isfinite(vectors).all())
    spread = float(vectors.std(axis=0).mean()) if finite else 0.0
    threshold = TrainConfig().collapse_ratio / math.sqrt(vectors.shape[1])
    collapsed = bool(meta["collapsed"].value) if "collapsed" in meta else False
    return dg.AssetCheckResult(
        passed=not bad_tensors and finite and spread >= threshold and not collapsed,
        metadata={
            "non_finite_tensors": len(bad_tensors),
            "finite_vectors": finite,
            "probe_posters": len(probe),
            "embedding_std": round(spread, 5),
            "threshold": round(threshold, 5),
            "collapsed_in_training": collapsed,
            "ir_path": dg.MetadataValue.path(str(ir_path)),
        },
    )
