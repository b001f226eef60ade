"""Models: registry, weights store and the OpenVINO inference layer.

Entry points (import the submodule; this package imports nothing heavy):

- ``registry.get_spec(name, models_dir=None, version=None) -> ModelSpec``, ``registry.list_specs()``,
  ``registry.versions(name)``; a ``manifest.toml`` / ``manifest.json`` in the models folder adds
  versions or models (see ``registry``'s docstring).
- ``store.model_status(spec) -> ModelStatus``, ``store.pull(name, timeout)``, ``store.verify()``,
  ``store.model_version(spec)`` (the version string stored with values) and
  ``store.model_data_version(name)`` (sha256 in use, or the fallback's version: the data version
  of a model's observable source asset).
- ``ocr.OcrEngine(models_dir=None).read(rgb) -> list[OcrItem]``
- ``depth.DepthEstimator(models_dir=None).predict_batch(images, text_boxes) -> list[HxW float32]``
- ``foreground.ForegroundSegmenter(models_dir=None).predict_batch(images, text_boxes)``
- ``runtime.core()`` / ``runtime.compile_model(...)``: the one OpenVINO Core with its cache.
"""
