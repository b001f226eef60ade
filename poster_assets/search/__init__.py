"""Similarity search: FAISS indexes kept in step with the stored vectors, and the search API."""
