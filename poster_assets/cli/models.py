"""``poster-assets models``: the model registry (list, pull, verify)."""

from __future__ import annotations

import click

from poster_assets import settings
from poster_assets.cli.output import format_table

_COLUMNS = ["name", "task", "version", "status", "in use", "why"]


@click.group()
def models() -> None:
    """The model registry: what is present, pulled, verified, or replaced by a fallback."""


def _status_rows(statuses) -> list[tuple[str, ...]]:
    return [(s.spec.name, s.spec.task, s.spec.version, s.state, s.in_use, s.reason or "") for s in statuses]


@models.command("list")
def models_list() -> None:
    """Each registered model with its status (present / missing / fallback in use)."""
    from poster_assets.models.registry import list_specs
    from poster_assets.models.weights import model_status

    statuses = [model_status(spec, settings.models_dir()) for spec in list_specs(settings.models_dir())]
    click.echo(format_table(_COLUMNS, _status_rows(statuses), 60))


@models.command("pull")
@click.argument("name")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the download.")
def models_pull(name: str, timeout: float) -> None:
    """Download NAME from its public source, verify its sha256 and put it in place atomically."""
    from poster_assets.models.registry import UnknownModelError
    from poster_assets.models.weights import ModelUnavailableError, pull

    try:
        status = pull(name, timeout=timeout, models_dir=settings.models_dir())
    except (UnknownModelError, ModelUnavailableError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    click.echo(f"{name}: {status.state} at {status.path}")


@models.command("verify")
def models_verify() -> None:
    """Re-hash every model file that is present."""
    from poster_assets.models.weights import verify

    statuses = verify(settings.models_dir())
    click.echo(format_table(_COLUMNS, _status_rows(statuses), 60))
    if any(s.sha256_ok is False for s in statuses):
        raise click.ClickException("some model files do not match their pinned sha256")


COMMANDS = [models]
