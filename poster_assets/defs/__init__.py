"""Dagster definitions only, one folder per domain; ``poster_assets.definitions`` loads them all."""
