"""The trained encoder (trunk + 128-d projection + L2 normalisation) as OpenVINO IR.

The IR carries what inference needs in its runtime info (``models.ssl_encoder.RT_SECTION``):
the input size and the checkpoint's sha256, so an IR file alone says which model it is. The
sha256 of its files is recorded beside it (``sha256.json``, ``models.artifacts``), so a changed
file is refused rather than run. ``models.ssl_encoder.SslEmbedder`` runs it, with no torch.
"""

from __future__ import annotations

from pathlib import Path

from poster_assets.models.artifacts import record_hashes
from poster_assets.models.ssl_encoder import IR_NAME, MODEL_NAME, RT_SECTION
from poster_assets.storage.files import atomic_dir, file_sha256


def export_openvino(checkpoint: Path, out_dir: Path) -> Path:
    """Convert ``checkpoint`` to ``out_dir/ssl_encoder_<sha12>/model.xml`` (fp32) and return it.

    Written into a temporary folder and renamed in one step; an IR already there for the same
    checkpoint is reused.
    """
    import openvino as ov
    import torch

    from poster_assets.ssl.model import NormalisedEncoder
    from poster_assets.ssl.train import load_checkpoint

    checkpoint = Path(checkpoint)
    sha = file_sha256(checkpoint)
    target = Path(out_dir) / f"ssl_encoder_{sha[:12]}" / IR_NAME
    if target.exists() and target.with_suffix(".bin").exists():
        return target
    model, config, payload = load_checkpoint(checkpoint)
    net = NormalisedEncoder(model.encoder).eval()
    size = config.image_size
    with torch.no_grad():
        ov_model = ov.convert_model(
            net, example_input=torch.zeros(2, 3, size, size), input=[ov.PartialShape([-1, 3, size, size])]
        )
    ov_model.inputs[0].get_tensor().set_names({"pixels"})
    ov_model.outputs[0].get_tensor().set_names({"embedding"})
    for key, value in {
        "model": MODEL_NAME,
        "checkpoint_sha256": sha,
        "image_size": str(size),
        "data_version": payload["data_version"],
    }.items():
        ov_model.set_rt_info(value, [RT_SECTION, key])
    with atomic_dir(target.parent) as tmp:
        # fp32 weights: fp16 compression would move the vectors away from the checkpoint's.
        ov.save_model(ov_model, tmp / IR_NAME, compress_to_fp16=False)
        record_hashes(tmp, source={"model": MODEL_NAME, "checkpoint_sha256": sha})
    return target
