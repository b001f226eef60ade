"""The project's own structure-aware self-supervised encoder (SimSiam + structure labels).

Nothing is imported here (torch is heavy; the Dagster definitions import ``ssl.config``, which
runs this file). Entry points, by module:

- ``ssl.config``: ``TrainConfig``, the one place the training defaults are set.
- ``ssl.labels``: ``load_training_items(store)`` (``marts.ssl_labels`` -> ``TrainItem`` list,
  ``LabelsNotBuiltError`` before the dbt models are built) and ``data_version(items)``.
- ``ssl.augment``: ``Augment``, ``subject_view``, ``title_view`` (views of a poster).
- ``ssl.dataset``: ``PairDataset`` and ``collate`` (SimSiam pairs built from the structure).
- ``ssl.model``: ``SimSiamModel``, ``SslEncoder``, ``NormalisedEncoder`` and the losses.
- ``ssl.train``: ``train_encoder`` (items -> checkpoint), ``load_checkpoint``, ``plot_losses``,
  ``CollapseError``, ``TrainResult``.
- ``ssl.export``: ``export_openvino`` (checkpoint -> IR); ``models.ssl_encoder.SslEmbedder``
  runs the IR (128-d unit vectors) without torch.
- ``ssl.evaluate``: held-out comparison with ImageNet features and raw pixels
  (``python -m poster_assets.ssl.evaluate``).
"""
