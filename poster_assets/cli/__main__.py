"""``python -m poster_assets.cli``: the same as ``poster-assets``."""

from poster_assets.cli import entry_point

entry_point()
