"""The one ``Definitions`` object: ``workspace.yaml`` and ``dagster dev`` load this module.

Every module under ``defs/`` is loaded as Dagster's own ``load_from_defs_folder`` does it: the
assets, checks, jobs, schedules and sensors it defines at top level, and the ``Definitions`` of
its ``@dg.definitions`` functions (shared resources, lists built in a loop). On top, what the UI
shows for every asset: its owner and a link to its code.

The corpus-wide assets (indexes, dbt models) have no freshness policy on purpose. Dagster's
policies (``FreshnessPolicy.time_window`` / ``.cron``) measure time since the last
materialization, but these assets are materialized only when what they read changed (a refresh
with nothing new skips them), so a quiet day would mark current assets late. Whether they are
behind depends on their inputs, not on the clock: each records the data version of what it read,
their eager automation condition rebuilds them after an upstream update (with the corpus
automation sensor on), and ``poster-assets run`` compares that data version with what they would
read now and rebuilds exactly the ones behind (``cli.runs.corpus_behind``).
"""

import os
import warnings
from pathlib import Path

import dagster as dg
from dagster._record import replace

# Who answers for the data: the UI filters and shows assets by owner. A team installing the
# platform sets its own (an email or ``team:name``).
OWNERS = os.environ.get("POSTER_ASSETS_OWNERS", "team:poster-assets").split(",")


def _presented(spec: dg.AssetSpec) -> dg.AssetSpec:
    return spec.replace_attributes(owners=spec.owners or OWNERS)


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
