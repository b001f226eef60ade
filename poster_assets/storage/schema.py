"""Tables poster-assets writes. One statement list, applied idempotently on first write."""

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

SCHEMA_SQL = RAW_POSTERS + EXTRACTIONS
