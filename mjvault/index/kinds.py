"""Images' media kinds for the index: what a checkout would otherwise read per image.

A view names each file by its real type (Midjourney records say ``png`` for images that may
be WebP or JPEG) and may link to an object only when its file is the image itself (a plain
vault stores recognisable media raw, anything else framed). Both follow from an object's
first 16 bytes, which never change (objects are immutable): reading them once, when the job
enters the index, spares every later checkout a read per image.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from mjvault.store.codec import stored_media_kind
from mjvault.store.objects import ObjectStore

HEAD_BYTES = 16
Kinds = tuple[str | None, ...]


def raw_kind(path: str) -> str | None:
    """The media kind of the object file at ``path`` if that file is the image itself."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None  # absent: a checkout finds out for itself (and reports it)
    try:
        head = os.read(fd, HEAD_BYTES)
    finally:
        os.close(fd)
    return stored_media_kind(head)


def kind_reader(store: ObjectStore) -> Callable[[Kinds], Kinds]:
    """What :class:`~mjvault.index.db.Index` calls to fill a summary's ``kinds``."""
    if store.encrypted:
        # Every object is sealed: none can be linked, and its type needs decrypting.
        return lambda images: (None,) * len(images)

    def kinds(images: Kinds) -> Kinds:
        return tuple(raw_kind(os.fspath(store.path(i))) if i is not None else None for i in images)

    return kinds
