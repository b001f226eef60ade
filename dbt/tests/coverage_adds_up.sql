-- Each asset's posters are accounted for exactly once by their current versions: no ok poster
-- is current at two versions, and no more are current than there are ok posters.
-- It reads two models; the Dagster check belongs to extraction_coverage (`dagster.ref`).
{{ config(meta={'dagster': {'ref': {'name': 'extraction_coverage'}}}) }}

select asset, sum(current_for_posters) as current_posters
from {{ ref('extraction_coverage') }}
group by asset
having sum(current_for_posters) > (select count(*) from {{ ref('stg_posters') }})
