-- Labels for self-supervised training, one row per poster whose four extractions are all
-- present, ordered for a curriculum by `difficulty` (easy first). The formula is documented in
-- _marts.yml; the weights sum to 1 and every term is in [0, 1], so difficulty is too.
{% set small_below = 0.15 %}
{% set large_from = 0.40 %}

with annotated as (
    select * from {{ ref('poster_annotations') }} where is_complete
),

labelled as (
    select
        poster_id,
        coalesce(title_placement, 'none') as title_placement,
        layer_count,
        ocr_lines > 0 as has_text,
        case
            when foreground_area < {{ small_below }} then 'small'
            when foreground_area < {{ large_from }} then 'medium'
            else 'large'
        end as foreground_bucket,
        coalesce(lower(genres[1]), 'unknown') as primary_genre,
        foreground_area,
        ocr_mean_confidence,
        least(1.0, greatest(0.0, (layer_count - 2) / 5.0)) as layers_term,
        1.0 - least(1.0, foreground_area / 0.5) as foreground_term,
        case when ocr_lines = 0 then 1.0 else 1.0 - least(1.0, greatest(0.0, ocr_mean_confidence)) end
            as ocr_term,
        (case coalesce(title_placement, 'none') when 'middle' then 1.0 when 'none' then 0.5 else 0.0 end)::double
            as placement_term,
        layers_version,
        foreground_version,
        ocr_version
    from annotated
),

scored as (
    select
        *,
        round(0.3 * layers_term + 0.3 * foreground_term + 0.2 * ocr_term + 0.2 * placement_term, 4)
            as difficulty
    from labelled
)

select
    poster_id,
    title_placement,
    layer_count,
    has_text,
    foreground_bucket,
    primary_genre,
    difficulty,
    row_number() over (order by difficulty, poster_id) as curriculum_rank,
    layers_term,
    foreground_term,
    ocr_term,
    placement_term,
    layers_version,
    foreground_version,
    ocr_version
from scored
