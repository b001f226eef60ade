-- Every extraction record; `is_current` marks the ok record at the version the models in use
-- serve now, the one definition of "current" the Python side uses too
-- (poster_assets.extract.versions.current_versions, written to `current_versions` before each
-- build). A poster whose current-version extraction failed or has not run has no current value:
-- the marts leave it out rather than mix in an older model's value.
--
-- `extractions` and `current_versions` are written by the Dagster assets themselves; they are
-- read by name and their lineage declared through the extractor tables:
-- depends_on: {{ source('poster_store', 'ocr_text') }}
-- depends_on: {{ source('poster_store', 'depth_maps') }}
-- depends_on: {{ source('poster_store', 'foreground_masks') }}
-- depends_on: {{ source('poster_store', 'layer_masks') }}
select
    e.asset,
    e.poster_id,
    e.model_version,
    e.status,
    e.error,
    e.batch,
    e.seconds,
    e.extracted_at,
    coalesce(e.status = 'ok' and e.model_version = c.model_version, false) as is_current
from {{ store_table('extractions') }} as e
left join {{ store_table('current_versions') }} as c using (asset)
