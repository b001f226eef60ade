"""``poster-assets rebuild-index``: repair the similarity indexes without re-running the batches.

`poster-assets run` only materializes what Dagster considers missing; an index file damaged on
disk after its materialization is nothing Dagster can see, so `run` leaves it as it is. This
materializes `faiss_index` itself (on the instance the UI shows), which checks every saved
index against its checksums and rebuilds the missing or damaged ones from the stored embeddings.
"""

from __future__ import annotations

import click

from poster_assets.cli.output import format_table
from poster_assets.extract.versions import ALL_KINDS, SSL_KIND
from poster_assets.storage.store import Store


@click.command("rebuild-index")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(ALL_KINDS),
    help="Also rebuild this kind's index from its stored embeddings when it reads fine (repeatable).",
)
def rebuild_index(kinds: tuple[str, ...]) -> None:
    """Check every similarity index and rebuild the missing or damaged ones (materializes faiss_index).

    Each saved index is verified against the sha256 in its meta.json; one that is missing,
    unreadable, built with another model, or named with --kind is rebuilt from the stored
    embeddings, the others only get the posters they lack. poster_neighbors is rewritten.
    """
    import dagster as dg

    from poster_assets.cli import runs
    from poster_assets.models.hub import Models
    from poster_assets.search.sync import request_rebuild

    store = Store.at()
    if SSL_KIND in kinds and Models(store.models_dir).ssl_encoder() is None:
        raise click.ClickException(
            "there is no trained encoder, so no ssl index: `poster-assets train-encoder` first"
        )
    for kind in kinds:
        try:
            found = store.db.query("SELECT 1 FROM foreground_embeddings WHERE kind = ? LIMIT 1", [kind])
        except FileNotFoundError:
            found = []
        if not found:
            raise click.ClickException(
                f"there are no {kind} embeddings to rebuild from: `poster-assets run` first"
            )
        request_rebuild(store, kind)
    inst = runs.instance()
    click.echo("materializing faiss_index (checks every index, rebuilds what needs it) …")
    result = runs.run_corpus(inst, only=[dg.AssetKey("faiss_index")])
    events = result.asset_materializations_for_node("faiss_index") if result.success else []
    if not events:
        raise click.ClickException("faiss_index failed; see `poster-assets ui` for the run log")
    meta = {k: v.value for k, v in events[0].metadata.items()}
    kinds_done = [k for k in ALL_KINDS if f"{k}_mode" in meta]
    rows = [
        (k, meta[f"{k}_mode"], meta.get(f"{k}_count", 0), meta.get(f"{k}_reason", "")) for k in kinds_done
    ]
    click.echo(format_table(["kind", "mode", "posters", "why"], rows, 90))
    if empty := [k for k in kinds_done if meta[f"{k}_mode"] == "empty"]:
        say = f"no embeddings for {', '.join(empty)}: ingest posters and run `poster-assets run` first"
        click.echo(say, err=True)


COMMANDS = [rebuild_index]
