"""The one ``Definitions`` object: ``workspace.yaml`` and ``dagster dev`` load this module.

Every module under ``defs/`` is loaded as Dagster's own ``load_from_defs_folder`` does it: the
assets, checks, jobs, schedules and sensors it defines at top level, and the ``Definitions`` of
its ``@dg.definitions`` functions (shared resources, lists built in a loop).
"""

from pathlib import Path

import dagster as dg

defs = dg.load_from_defs_folder(path_within_project=Path(__file__).parent / "defs")
