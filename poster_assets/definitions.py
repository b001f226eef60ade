"""The one ``Definitions`` object: ``workspace.yaml`` and ``dagster dev`` load this module.

Every module under ``defs/`` is loaded as Dagster's own ``load_from_defs_folder`` does it: the
assets, checks, jobs, schedules and sensors it defines at top level, and the ``Definitions`` of
its ``@dg.definitions`` functions (shared resources, lists built in a loop). On top, what the UI
shows for every asset: its owner, a link to its code, and for the corpus-wide assets how fresh
they should be.
"""

import datetime as dt
import os
import warnings
from pathlib import Path

import dagster as dg
from dagster._record import replace

from poster_assets.defs.jobs import CORPUS_GROUPS

# Who answers for the data: the UI filters and shows assets by owner. A team installing the
# platform sets its own (an email or ``team:name``).
OWNERS = os.environ.get("POSTER_ASSETS_OWNERS", "team:poster-assets").split(",")

# The indexes and marts follow every batch (the corpus automation sensor) and the nightly
# refresh, so a day and a bit without an update means the automation is off or failing.
CORPUS_FRESHNESS = dg.FreshnessPolicy.time_window(
    warn_window=dt.timedelta(hours=26), fail_window=dt.timedelta(hours=50)
)


def _presented(spec: dg.AssetSpec) -> dg.AssetSpec:
    spec = spec.replace_attributes(owners=spec.owners or OWNERS)
    if spec.group_name in CORPUS_GROUPS and spec.freshness_policy is None:
        spec = spec.replace_attributes(freshness_policy=CORPUS_FRESHNESS)
    return spec


def _load() -> dg.Definitions:
    loaded = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
    # The APIs below are marked beta / preview; the warnings would print in every process.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        warnings.simplefilter("ignore", dg.PreviewWarning)
        # Code references ("open in editor" on each asset): the file and line of its function.
        # An asset imported by a second module is listed twice (the same object): once is enough.
        assets = list({id(a): a for a in loaded.assets or []}.values())
        loaded = replace(loaded, assets=dg.with_source_code_references(assets))
        # Permissive: the models are observable source assets, left as they are.
        return loaded.permissive_map_resolved_asset_specs(func=_presented, selection=None)


defs = _load()
