"""Getting posters in: batches, file names, decoding, sidecars, and the ingest of a batch."""
