"""Tables poster-assets writes. One statement list, applied idempotently on first write."""

# The database file in a home folder.
DB_FILE = "poster_assets.duckdb"

RAW_POSTERS = """
CREATE TABLE IF NOT EXISTS raw_posters (
    poster_id      VARCHAR NOT NULL,   -- sha256 of the file bytes
    source_uri     VARCHAR NOT NULL,   -- absolute path of the file as ingested
    file_name      VARCHAR NOT NULL,
    file_bytes     BIGINT NOT NULL,
    status         VARCHAR NOT NULL CHECK (status IN ('ok', 'quarantined', 'duplicate')),
    reason         VARCHAR,            -- why quarantined, or which file this duplicates
    duplicate_of   VARCHAR,            -- source_uri of the first ok copy of the same bytes
    width          INTEGER,            -- after EXIF orientation
    height         INTEGER,
    format         VARCHAR,            -- JPEG, PNG, WEBP, GIF, ...
    source_mode    VARCHAR,            -- Pillow mode before conversion to RGB (CMYK, I;16, P, ...)
    frames         INTEGER,
    exif_rotated   BOOLEAN,
    title          VARCHAR,            -- sidecar fields
    genres         VARCHAR[],
    year           INTEGER,
    sidecar        JSON,
    original_path  VARCHAR,            -- blob paths, relative to POSTER_ASSETS_HOME
    thumbnail_path VARCHAR,
    batch          VARCHAR NOT NULL,
    decoder        VARCHAR NOT NULL,   -- e.g. pillow-11.0.0/decode-v1
    ingested_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (poster_id, source_uri)
);
-- Added after the first release: ALTER (not the CREATE above) so that new and migrated databases
-- have the same columns in the same order.
ALTER TABLE raw_posters ADD COLUMN IF NOT EXISTS sidecar_error VARCHAR;  -- sidecar values dropped, and why
"""

# One row per (extractor, poster, model version): the record that a poster was processed,
# even when it produced no detail rows (a poster with no text has no ocr_text rows).
EXTRACTIONS = """
CREATE TABLE IF NOT EXISTS extractions (
    asset          VARCHAR NOT NULL,
    poster_id      VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    status         VARCHAR NOT NULL CHECK (status IN ('ok', 'failed')),
    error          VARCHAR,
    batch          VARCHAR NOT NULL,
    seconds        DOUBLE,
    extracted_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (asset, poster_id, model_version)
);
"""

OCR_TEXT = """
CREATE TABLE IF NOT EXISTS ocr_text (
    poster_id      VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    line_index     INTEGER NOT NULL,   -- reading order: top to bottom, left to right
    text           VARCHAR NOT NULL,
    confidence     DOUBLE NOT NULL,
    polygon        DOUBLE[8] NOT NULL, -- x0 y0 x1 y1 x2 y2 x3 y3, clockwise from top-left
    box            INTEGER[4] NOT NULL,-- x0 y0 x1 y1 (exclusive), pixels of the upright image
    PRIMARY KEY (poster_id, model_version, line_index)
);
"""

DEPTH_MAPS = """
CREATE TABLE IF NOT EXISTS depth_maps (
    poster_id      VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    depth_path     VARCHAR NOT NULL,   -- 16-bit PNG, 65535 = nearest
    width          INTEGER NOT NULL,
    height         INTEGER NOT NULL,
    depth_min      DOUBLE NOT NULL,    -- before normalisation to [0, 1]
    depth_max      DOUBLE NOT NULL,
    depth_mean     DOUBLE NOT NULL,
    histogram      DOUBLE[32] NOT NULL,-- share of pixels per depth bin, far to near
    modes          DOUBLE[] NOT NULL,  -- depth values of the histogram's peaks
    PRIMARY KEY (poster_id, model_version)
);
"""

FOREGROUND_MASKS = """
CREATE TABLE IF NOT EXISTS foreground_masks (
    poster_id      VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    mask_path      VARCHAR NOT NULL,   -- 8-bit PNG of foreground probability
    area_fraction  DOUBLE NOT NULL,    -- share of pixels with probability >= 0.5
    bbox           INTEGER[4],         -- of those pixels; NULL when there are none
    mean_probability DOUBLE NOT NULL,
    PRIMARY KEY (poster_id, model_version)
);
"""

LAYER_MASKS = """
CREATE TABLE IF NOT EXISTS layer_masks (
    poster_id      VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,   -- method + hash of the three input versions
    layer_index    INTEGER NOT NULL,   -- value of this layer in the label PNG
    depth_rank     INTEGER NOT NULL,   -- 0 = farthest
    role           VARCHAR NOT NULL CHECK (role IN ('title', 'subject', 'background', 'other')),
    area_fraction  DOUBLE NOT NULL,
    bbox           INTEGER[4] NOT NULL,
    mean_depth     DOUBLE NOT NULL,
    k              INTEGER NOT NULL,   -- layers in this poster
    title_text     VARCHAR,            -- on the title layer: the OCR text chosen as the title
    title_box      INTEGER[4],
    labels_path    VARCHAR NOT NULL,   -- 8-bit PNG, pixel value = layer_index
    method_version VARCHAR NOT NULL,
    depth_version  VARCHAR NOT NULL,
    foreground_version VARCHAR NOT NULL,
    ocr_version    VARCHAR NOT NULL,
    PRIMARY KEY (poster_id, model_version, layer_index)
);
"""

# Embeddings of different kinds have different widths (1280 for EfficientNet, 768 for the pixel
# baseline, something else for a later SSL encoder). A fixed FLOAT[N] column fixes N per table,
# so one table would need a column per width; instead one variable-length FLOAT[] with its
# width in ``dim`` (checked). A query over one kind casts to the fixed type when it needs
# DuckDB's array functions: ``embedding::FLOAT[1280]``.
FOREGROUND_EMBEDDINGS = """
CREATE TABLE IF NOT EXISTS foreground_embeddings (
    poster_id      VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,   -- foreground | poster | pixels
    model_version  VARCHAR NOT NULL,   -- what was fed + the model (+ the mask model for foreground)
    dim            INTEGER NOT NULL,
    embedding      FLOAT[] NOT NULL CHECK (len(embedding) = dim),  -- L2-normalised
    PRIMARY KEY (poster_id, kind, model_version)
);
"""

# Top-k most similar other posters per poster and kind, from the FAISS index; rewritten whole
# by each faiss_index materialization.
POSTER_NEIGHBORS = """
CREATE TABLE IF NOT EXISTS poster_neighbors (
    poster_id      VARCHAR NOT NULL,
    kind           VARCHAR NOT NULL,
    model_version  VARCHAR NOT NULL,
    rank           INTEGER NOT NULL,   -- 1 = most similar
    neighbor_id    VARCHAR NOT NULL,
    score          DOUBLE NOT NULL,    -- cosine similarity
    PRIMARY KEY (poster_id, kind, model_version, rank)
);
"""

# The version each per-poster asset is current at, as the models in use say
# (``extract.versions.current_versions``); rewritten before every dbt build, read by the dbt models.
CURRENT_VERSIONS = """
CREATE TABLE IF NOT EXISTS current_versions (
    asset          VARCHAR PRIMARY KEY,
    model_version  VARCHAR NOT NULL,
    recorded_at    TIMESTAMPTZ NOT NULL
);
"""

# Scores of one poster's layers against its demo ground truth (``extract.evaluate``): decoding the
# masks is what scoring costs, so each poster is scored once and the quality check of a batch run
# decodes only the posters new to it. A cache, keyed by everything a score is computed from, and
# dropped with what it was computed from (``DERIVED_TABLES``, gc, abandoning the poster's batch).
LAYER_SCORES = """
CREATE TABLE IF NOT EXISTS layer_scores (
    poster_id      VARCHAR NOT NULL,
    source_uri     VARCHAR NOT NULL,   -- the copy whose folder's ground truth was used
    layers_version VARCHAR NOT NULL,   -- layer_masks.model_version scored
    foreground_version VARCHAR NOT NULL, -- of the foreground mask scored
    truth_digest   VARCHAR NOT NULL,   -- sha1 of the ground-truth record scored against
    title_in_layer DOUBLE NOT NULL,    -- share of the true title ink inside the title layer
    subject_iou    DOUBLE NOT NULL,    -- subject layer against the true foreground
    fg_iou         DOUBLE,             -- foreground mask against the true foreground; NULL without a mask
    scored_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (poster_id, source_uri, layers_version, foreground_version, truth_digest)
);
"""

# The lake's segments (``storage.lake``) this file holds: a refresh applies the others.
LAKE_SEGMENTS = """
CREATE TABLE IF NOT EXISTS lake_segments (
    segment        VARCHAR NOT NULL,   -- folder name under lake/batch=<batch>/
    batch          VARCHAR NOT NULL,
    rows           BIGINT NOT NULL,    -- rows the segment added
    applied_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (batch, segment)
);
"""

# Tables computed from another table's rows of the same poster: writing a poster's rows there
# (``extract.runner``) deletes its rows here, so a value redone at the same version is rescored.
DERIVED_TABLES: dict[str, tuple[str, ...]] = {
    "layer_masks": ("layer_scores",),
    "foreground_masks": ("layer_scores",),
}

# Columns holding blob paths (relative to the home folder), per table: what gc and abandoning a
# batch must delete with the rows.
BLOB_PATH_COLUMNS: dict[str, tuple[str, ...]] = {
    "raw_posters": ("original_path", "thumbnail_path"),
    "depth_maps": ("depth_path",),
    "foreground_masks": ("mask_path",),
    "layer_masks": ("labels_path",),
}

SCHEMA_SQL = (
    RAW_POSTERS
    + EXTRACTIONS
    + OCR_TEXT
    + DEPTH_MAPS
    + FOREGROUND_MASKS
    + LAYER_MASKS
    + FOREGROUND_EMBEDDINGS
    + POSTER_NEIGHBORS
    + CURRENT_VERSIONS
    + LAYER_SCORES
    + LAKE_SEGMENTS
)
