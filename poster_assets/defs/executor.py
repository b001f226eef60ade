"""How a run executes its steps, chosen per deployment by ``POSTER_ASSETS_EXECUTOR``.

- ``in_process`` (default): the steps one after another in the run's own process. Dagster's
  multiprocess executor would start a process per step, each spending 5–10 s importing Dagster,
  dbt, OpenVINO and the project before a few seconds of work; on a laptop the extraction step
  already keeps every core busy, so nothing is won.
- ``multiprocess``: a process per step, independent steps side by side (``max_concurrent`` in the
  run config's ``execution`` block, default the CPU count); batches run side by side as separate
  runs, as many at a time as the ``poster_batch`` pool allows (``resources.py``).
- ``celery``: each step is a task for Celery workers on any machine that sees the home folder
  (``deploy/celery``): Redis as the broker, the instance on PostgreSQL.

This covers every job and a materialization launched from the UI's asset graph.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import dagster as dg

from poster_assets import settings

VISIBILITY_ENV = "POSTER_ASSETS_CELERY_VISIBILITY_S"


def celery_settings() -> dict[str, Any]:
    """Celery settings both sides must agree on: the executor passes them to the app it submits
    steps with, and workers read them from ``deploy/celery/dagster_celery_config.py``."""
    broker = settings.celery_broker()
    return {
        "broker_url": broker,
        "result_backend": broker,
        # A step's task is acknowledged when it ends, not when a worker takes it: the step of a
        # worker killed mid-batch goes back to the queue (at once when only its pool process
        # died, after the visibility timeout when the whole worker did) and another worker
        # runs it again. Every extractor write replaces its rows by key, so a rerun is safe.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # Steps last minutes: a worker holding a second one in reserve would only delay it.
        "worker_prefetch_multiplier": 1,
        # Longer than any step, or Redis hands a running step to a second worker.
        "broker_transport_options": {"visibility_timeout": int(os.environ.get(VISIBILITY_ENV, "7200"))},
    }


def _celery_executor() -> dg.ExecutorDefinition:
    # Imported here: dagster-celery is the `scale` extra, not needed on a laptop.
    from celery.exceptions import DuplicateTaskNameWarning
    from dagster_celery import celery_executor

    # dagster-celery registers its one task again for every step it submits; the first stands.
    warnings.filterwarnings("ignore", category=DuplicateTaskNameWarning)

    conf = celery_settings()
    return celery_executor.configured(
        {
            "broker": conf.pop("broker_url"),
            "backend": conf.pop("result_backend"),
            "config_source": conf,
        },
        name="celery",
    )


def chosen_executor() -> dg.ExecutorDefinition:
    name = settings.executor_name()
    if name == "multiprocess":
        return dg.multiprocess_executor
    if name == "celery":
        return _celery_executor()
    return dg.in_process_executor


@dg.definitions
def executor() -> dg.Definitions:
    return dg.Definitions(executor=chosen_executor())
