"""Tests of the model registry, store and inference layer."""
