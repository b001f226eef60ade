"""Models: the registry, their weights, and the OpenVINO inference layer.

Entry points (import the submodule; this package imports nothing heavy):

- ``hub.Models(models_dir)``: the one way a model is loaded — ``ocr()``, ``depth()``,
  ``foreground()``, ``efficientnet()``, ``ssl_encoder()`` / ``ssl_embedder()`` and their versions.
- ``registry.get_spec(name, models_dir=None, version=None) -> ModelSpec``, ``registry.list_specs()``;
  a ``manifest.toml`` / ``manifest.json`` in the models folder adds versions or models.
- ``weights.model_status(spec)``, ``weights.pull(name)``, ``weights.verify()``,
  ``weights.model_version(spec)`` (the version string stored with values) and
  ``weights.model_data_version(name)`` (the data version of a model's source asset).
- ``artifacts``: sha256 records of converted models (IR), checked before they are compiled.
- ``runtime.core()`` / ``runtime.compile_model(...)``: the one OpenVINO Core with its cache.
"""
