"""mjvault: a Git-style, content-addressed vault for Midjourney archives.

from mjvault import Vault
vault = Vault.open("~/mj-vault")
"""

from __future__ import annotations

__version__ = "0.1.0"

# typing's own TYPE_CHECKING without importing typing (2 ms): `mjvault --version` imports
# this package and nothing else.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mjvault.vault import Vault


def __getattr__(name: str) -> Any:
    # Lazy so `mjvault --help` does not import LMDB, crypto and zstd before it needs them.
    if name == "Vault":
        from mjvault.vault import Vault

        return Vault
    raise AttributeError(name)


__all__ = ["Vault", "__version__"]
