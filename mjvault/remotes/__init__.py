"""Offsite copies of a vault: folder and object-store remotes (docs/FORMAT.md, "Remotes")."""
