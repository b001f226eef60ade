"""Per-poster extraction: the loop every extractor shares, and what each one writes."""
