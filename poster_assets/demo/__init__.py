"""Synthetic movie-poster corpus with exact ground truth: the project's demo data and benchmark."""

from poster_assets.demo.corpus import CorpusSummary, generate_corpus
from poster_assets.demo.ground_truth import GroundTruth, load_ground_truth
from poster_assets.demo.poster import PosterPlan, RenderedPoster, plan_poster, render_poster

__all__ = [
    "CorpusSummary",
    "GroundTruth",
    "PosterPlan",
    "RenderedPoster",
    "generate_corpus",
    "load_ground_truth",
    "plan_poster",
    "render_poster",
]
