import dagster as dg

from poster_assets.defs.ingest.assets import raw_posters

defs = dg.Definitions(assets=[raw_posters])
