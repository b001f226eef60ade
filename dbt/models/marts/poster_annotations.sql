-- One row per ok poster: what the extractors found, each value with the model version that
-- produced it. Each asset contributes its current version per poster (stg_extractions).
with posters as (
    select * from {{ ref('stg_posters') }}
),

current_extractions as (
    select asset, poster_id, model_version
    from {{ ref('stg_extractions') }}
    where is_current
),

ocr_current as (
    select poster_id, model_version from current_extractions where asset = 'ocr_text'
),

ocr_lines as (
    select o.*
    from {{ source('poster_store', 'ocr_text') }} as o
    join ocr_current as c using (poster_id, model_version)
),

ocr as (
    -- A poster OCR read without finding text has an extraction but no lines: 0 lines, not NULL.
    select
        c.poster_id,
        c.model_version as ocr_version,
        count(l.line_index) as ocr_lines,
        avg(l.confidence) as ocr_mean_confidence,
        coalesce(sum((l.box[3] - l.box[1]) * (l.box[4] - l.box[2])), 0) as ocr_box_area,
        arg_min(l.text, l.line_index) as first_line_text,
        arg_min(l.box, l.line_index) as first_line_box
    from ocr_current as c
    left join ocr_lines as l using (poster_id)
    group by all
),

layers as (
    select l.*
    from {{ source('poster_store', 'layer_masks') }} as l
    join current_extractions as c
        on c.asset = 'layer_masks' and c.poster_id = l.poster_id and c.model_version = l.model_version
),

layer_counts as (
    select poster_id, any_value(model_version) as layers_version, count(*) as layer_count
    from layers
    group by poster_id
),

-- The title and subject layers; should a poster ever have two (the source test
-- at_most_one_per_group flags it), the larger one wins so this model keeps one row per poster.
title_layer as (
    select poster_id, title_text, title_box
    from layers
    where role = 'title'
    qualify row_number() over (partition by poster_id order by area_fraction desc, layer_index) = 1
),

subject_layer as (
    select
        s.poster_id,
        s.layer_index as subject_layer_index,
        s.depth_rank as subject_depth_rank,
        s.area_fraction as subject_area_fraction,
        -- Layers other than the title that are nearer than the subject (0: the subject is in front).
        (
            select count(*) from layers as n
            where n.poster_id = s.poster_id and n.role <> 'title' and n.depth_rank > s.depth_rank
        ) as layers_in_front_of_subject
    from layers as s
    where s.role = 'subject'
    qualify row_number() over (partition by s.poster_id order by s.area_fraction desc, s.layer_index) = 1
),

foreground as (
    select f.poster_id, f.model_version as foreground_version, f.area_fraction, f.bbox
    from {{ source('poster_store', 'foreground_masks') }} as f
    join current_extractions as c
        on c.asset = 'foreground_masks' and c.poster_id = f.poster_id and c.model_version = f.model_version
),

depth as (
    select d.poster_id, d.model_version as depth_version, d.depth_mean, len(d.modes) as depth_modes
    from {{ source('poster_store', 'depth_maps') }} as d
    join current_extractions as c
        on c.asset = 'depth_maps' and c.poster_id = d.poster_id and c.model_version = d.model_version
),

titled as (
    select
        p.poster_id,
        case
            when t.title_text is not null then 'title_layer'
            when o.first_line_text is not null then 'ocr_first_line'
        end as title_source,
        coalesce(t.title_text, o.first_line_text) as title_text,
        case when t.title_text is not null then t.title_box else o.first_line_box end as title_box
    from posters as p
    left join title_layer as t using (poster_id)
    left join ocr as o using (poster_id)
)

select
    p.poster_id,
    p.file_name,
    p.width,
    p.height,
    p.batch,
    p.sidecar_title,
    p.genres,
    p.year,
    p.decoder as decoder_version,

    ti.title_text,
    ti.title_box,
    -- Thirds of the poster height, by the vertical centre of the title box.
    case
        when ti.title_box is null then null
        when (ti.title_box[2] + ti.title_box[4]) / 2.0 < p.height / 3.0 then 'top'
        when (ti.title_box[2] + ti.title_box[4]) / 2.0 < 2.0 * p.height / 3.0 then 'middle'
        else 'bottom'
    end as title_placement,
    ti.title_source,
    case ti.title_source when 'title_layer' then lc.layers_version when 'ocr_first_line' then o.ocr_version end
        as title_version,

    lc.layer_count,
    s.subject_layer_index,
    s.subject_depth_rank,
    s.layers_in_front_of_subject,
    -- Where the subject's depth layer sits among all layers: thirds of depth_rank / (layers - 1).
    case
        when s.subject_depth_rank is null then null
        when lc.layer_count = 1 or s.subject_depth_rank / (lc.layer_count - 1) >= 2.0 / 3 then 'front'
        when s.subject_depth_rank / (lc.layer_count - 1) <= 1.0 / 3 then 'back'
        else 'middle'
    end as subject_depth_plane,
    s.subject_area_fraction,
    lc.layers_version,

    f.area_fraction as foreground_area,
    f.bbox as foreground_bbox,
    f.foreground_version,

    o.ocr_lines,
    o.ocr_mean_confidence,
    least(1.0, o.ocr_box_area / (p.width * p.height)) as text_coverage,
    o.ocr_version,

    d.depth_mean,
    d.depth_modes,
    d.depth_version,

    o.ocr_version is not null and d.depth_version is not null and f.foreground_version is not null
        and lc.layers_version is not null as is_complete
from posters as p
left join titled as ti using (poster_id)
left join ocr as o using (poster_id)
left join layer_counts as lc using (poster_id)
left join subject_layer as s using (poster_id)
left join foreground as f using (poster_id)
left join depth as d using (poster_id)
