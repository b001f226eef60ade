"""Celery settings of a poster-assets worker: dagster-celery's app (``celery -A dagster_celery.app``)
imports this module when its folder is on ``PYTHONPATH`` (``deploy/celery/services.sh worker``).
The values are the executor's own (``poster_assets.defs.executor.celery_settings``), so the
workers and the runs that submit steps to them cannot disagree."""

from poster_assets.defs.executor import celery_settings as _settings

_conf = _settings()
broker_url = _conf["broker_url"]
result_backend = _conf["result_backend"]
task_acks_late = _conf["task_acks_late"]
task_reject_on_worker_lost = _conf["task_reject_on_worker_lost"]
worker_prefetch_multiplier = _conf["worker_prefetch_multiplier"]
broker_transport_options = _conf["broker_transport_options"]
