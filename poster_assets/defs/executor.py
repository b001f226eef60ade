"""How a run executes its steps: one after another in the run's own process.

Dagster's default executor starts a process per step, each spending 5–10 s importing Dagster,
dbt, OpenVINO and the project before a few seconds of work; and the steps could not overlap on
this storage anyway, since every DuckDB writer is in the ``poster_db`` pool of one. This covers
every job and a materialization launched from the UI's asset graph.
"""

import dagster as dg


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=dg.in_process_executor)
