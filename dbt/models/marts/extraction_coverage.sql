-- Per extractor asset and model version: how many ok posters have a value at that version, how
-- many failed, how many were never processed at it, and whether it is the asset's current version.
with posters as (
    select poster_id from {{ ref('stg_posters') }}
),

extractions as (
    -- Only posters that are ok now count; a row for anything else is not coverage.
    select e.*
    from {{ ref('stg_extractions') }} as e
    join posters using (poster_id)
),

versions as (
    select
        asset,
        model_version,
        count(*) filter (where status = 'ok') as ok_posters,
        count(*) filter (where status = 'failed') as failed_posters,
        count(*) filter (where is_current) as current_for_posters,
        min(extracted_at) as first_extracted_at,
        max(extracted_at) as last_extracted_at
    from extractions
    group by all
)

select
    v.asset,
    v.model_version,
    v.ok_posters,
    v.failed_posters,
    (select count(*) from posters) - v.ok_posters - v.failed_posters as missing_posters,
    v.ok_posters / nullif((select count(*) from posters), 0) as ok_share,
    v.current_for_posters,
    -- Current = the version the models in use serve (stg_extractions has the same definition).
    coalesce(v.model_version = c.model_version, false) as is_current_version,
    v.first_extracted_at,
    v.last_extracted_at
from versions as v
left join {{ store_table('current_versions') }} as c using (asset)
