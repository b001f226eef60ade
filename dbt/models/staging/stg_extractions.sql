-- Every extraction record, with `is_current` on the one whose values the marts use: per asset
-- and poster, the ok record with the newest extracted_at (ties broken by model_version), so a
-- model change that failed on a poster falls back to the last version that worked there.
--
-- `extractions` is written by the four extractors together with their rows; it is read by name
-- and its lineage declared through them, so the Dagster graph shows these assets upstream:
-- depends_on: {{ source('poster_store', 'ocr_text') }}
-- depends_on: {{ source('poster_store', 'depth_maps') }}
-- depends_on: {{ source('poster_store', 'foreground_masks') }}
-- depends_on: {{ source('poster_store', 'layer_masks') }}
select
    asset,
    poster_id,
    model_version,
    status,
    error,
    batch,
    seconds,
    extracted_at,
    status = 'ok' and row_number() over (
        partition by asset, poster_id
        order by (status = 'ok') desc, extracted_at desc, model_version desc
    ) = 1 as is_current
from {{ store_table('extractions') }}
