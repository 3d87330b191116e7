"""The Midjourney web API and CDN client. See docs/midjourney-client.md.

Public interface: :class:`MidjourneyClient`, :class:`ClientSettings`, :class:`Secret`,
:class:`ListedJob`, :class:`Listing`, :class:`DownloadResult`, :class:`MediaMissing`,
:class:`MediaDamaged`,
:class:`AuthStatus`, :func:`stop_after_known`, :func:`resolve_credentials`.
"""

from mjvault.sources.midjourney.auth import Credentials, resolve_credentials
from mjvault.sources.midjourney.client import (
    AuthStatus,
    ListedJob,
    Listing,
    MidjourneyClient,
    StopRule,
    stop_after_known,
)
from mjvault.sources.midjourney.download import (
    ByteSink,
    DownloadResult,
    MediaDamaged,
    MediaMissing,
)
from mjvault.sources.midjourney.settings import ClientSettings, Secret

__all__ = [
    "AuthStatus",
    "ByteSink",
    "ClientSettings",
    "Credentials",
    "DownloadResult",
    "ListedJob",
    "Listing",
    "MediaDamaged",
    "MediaMissing",
    "MidjourneyClient",
    "Secret",
    "StopRule",
    "stop_after_known",
    "resolve_credentials",
]
