"""Embeddings per poster: what each kind feeds its network (``kinds``) and the vectors made and
stored from it (``vectors``)."""
