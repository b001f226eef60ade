import dagster as dg

from poster_assets.defs.embed.assets import efficientnet_lite0, faiss_index, foreground_embeddings
from poster_assets.defs.embed.checks import embedding_norm_check, index_recall_check

# The `models` and `store` resources come from the extract domain and the top-level definitions.
defs = dg.Definitions(
    assets=[efficientnet_lite0, foreground_embeddings, faiss_index],
    asset_checks=[embedding_norm_check, index_recall_check],
)
