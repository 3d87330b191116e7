"""The object store: naming, encoding, encryption and atomic loose files. Knows nothing of Midjourney."""
