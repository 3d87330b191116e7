"""Checking a vault: structure, data, and (later) repair and garbage collection."""
