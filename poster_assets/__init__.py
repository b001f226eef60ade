"""poster-assets: structure out of human-made images, materialized as Dagster assets."""

__version__ = "0.1.0"
