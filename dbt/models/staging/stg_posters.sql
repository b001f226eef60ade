-- One row per ok poster. The same bytes ingested from two paths share a poster_id; keep the
-- first ok row (earliest ingest, then path) so every downstream model has one row per poster.
select
    poster_id,
    file_name,
    source_uri,
    width,
    height,
    format,
    title as sidecar_title,
    genres,
    year,
    batch,
    decoder,
    ingested_at
from {{ source('poster_store', 'raw_posters') }}
where status = 'ok'
qualify row_number() over (partition by poster_id order by ingested_at, source_uri) = 1
