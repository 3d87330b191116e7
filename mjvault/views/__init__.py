"""Checkout views: directories of links or copies of a vault's images, laid out by templates.

from mjvault.views import checkout, refresh_views
report = refresh_views(vault, auto_only=True)   # what a sync calls when it ends
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mjvault.views.reconcile import (
        RefreshReport,
        ViewsReport,
        checkout,
        list_views,
        refresh_view,
        refresh_views,
        remove_view,
    )

_EXPORTS = (
    "RefreshReport",
    "ViewsReport",
    "checkout",
    "list_views",
    "refresh_view",
    "refresh_views",
    "remove_view",
)


def __getattr__(name: str) -> Any:
    # Lazy: the template and path modules are pure and must not pull in the vault.
    if name in _EXPORTS:
        from mjvault.views import reconcile

        return getattr(reconcile, name)
    raise AttributeError(name)


__all__ = [
    "RefreshReport",
    "ViewsReport",
    "checkout",
    "list_views",
    "refresh_view",
    "refresh_views",
    "remove_view",
]
