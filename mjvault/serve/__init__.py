"""`mjvault serve`: a local web app over the vault's index (docs/api.md)."""

from __future__ import annotations

from mjvault.serve.app import create_app
from mjvault.serve.settings import ServeSettings, ServeState

__all__ = ["ServeSettings", "ServeState", "create_app"]
