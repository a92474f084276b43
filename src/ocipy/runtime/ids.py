"""Container ids: the one grammar, checked before an id names a directory under --root.

Apart from store.py so that `delete --force` of a container that is not
there (containerd's cleanup after every delete) can tell so without loading
the state machinery.
"""

from __future__ import annotations

from ocipy.errors import OcipyError

_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+.:=-")


def check_id(container_id: str) -> None:
    """An id names a directory under --root: no separators, no dot-dot."""
    if (not container_id or not container_id[0].isalnum() or not container_id.isascii()
            or not _ID_CHARS.issuperset(container_id)):  # fmt: skip
        raise OcipyError(f"invalid container id {container_id!r}: use letters, digits and _+.:=- (no '/' or '..')")
    if len(container_id) > 1024:
        raise OcipyError("invalid container id: longer than 1024 characters")
