import dagster as dg

from poster_assets.defs.ssl.assets import encoder_health_check, poster_encoder

# The `models` and `store` resources come from the extract domain and the top-level definitions.
defs = dg.Definitions(assets=[poster_encoder], asset_checks=[encoder_health_check])
