"""Test and demo infrastructure: a generated Midjourney account, its media, sample archives of
the original archiver scripts, and a Midjourney-compatible HTTP server with fault knobs.

Everything here is deterministic from a seed: the same arguments give the same bytes.
"""
