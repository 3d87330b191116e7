"""mjvault: a Git-style, content-addressed vault for Midjourney archives.

from mjvault import Vault
vault = Vault.open("~/mj-vault")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from mjvault.vault import Vault


def __getattr__(name: str) -> Any:
    # Lazy so `mjvault --help` does not import LMDB, crypto and zstd before it needs them.
    if name == "Vault":
        from mjvault.vault import Vault

        return Vault
    raise AttributeError(name)


__all__ = ["Vault", "__version__"]
