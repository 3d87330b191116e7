"""Similar images, near-duplicates, prompt families and optional embeddings (issue 17)."""
