"""The one graph walker: every descriptor an image (or index) reaches.

copy, gc, export and validate all walk the same graph: an index's
``manifests``, a manifest's ``config`` and ``layers`` (and, for gc only,
``subject``).  Reading a document is the caller's (a layout, an archive or
a registry, through :mod:`ocipy.content.store`): ``read(desc)`` returns the
verified, validated document of a manifest or index descriptor, or None
when there is nothing below it to follow.  No recursion: a hostile graph
cannot exhaust the stack, and each digest is visited once (a cycle ends).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ocipy.errors import ImageError
from ocipy.spec import image as spec

Descriptor = dict[str, Any]
# indexes within indexes deeper than this are refused (real ones nest one level)
MAX_INDEX_DEPTH = 8


def is_document(desc: Descriptor) -> bool:
    return desc.get("mediaType") in spec.MANIFEST_TYPES + spec.INDEX_TYPES


def children(doc: dict[str, Any], subjects: bool = False) -> list[Descriptor]:
    """The descriptors a manifest or index names, in document order."""
    out: list[Descriptor] = list(doc.get("manifests") or [])
    if isinstance(doc.get("config"), dict):
        out.append(doc["config"])
    out.extend(doc.get("layers") or [])
    if subjects and isinstance(doc.get("subject"), dict):
        out.append(doc["subject"])
    return out


def walk(read: Callable[[Descriptor], dict[str, Any] | None], tops: Iterable[Descriptor],
         subjects: bool = False) -> list[Descriptor]:
    """Every descriptor reachable from `tops`, each digest once, parents before
    their children (breadth first).  Copying reverses it: leaves first, so a
    destination never names content it does not hold yet."""
    out: list[Descriptor] = []
    seen: set[str] = set()
    todo = list(tops)
    i = 0
    while i < len(todo):
        desc = todo[i]
        i += 1
        digest = desc.get("digest")
        if not isinstance(digest, str) or digest in seen:
            continue
        seen.add(digest)
        out.append(desc)
        if is_document(desc):
            doc = read(desc)
            if doc is not None:
                todo.extend(children(doc, subjects))
    return out


def resolve_image(read: Callable[[Descriptor], dict[str, Any]], desc: Descriptor,
                  platform: dict[str, Any] | None = None) -> tuple[Descriptor, dict[str, Any]]:
    """From `desc` down through indexes, by the platform rule, to one image manifest:
    (its descriptor, the manifest)."""
    for _ in range(MAX_INDEX_DEPTH + 1):
        doc = read(desc)
        if desc.get("mediaType") in spec.MANIFEST_TYPES:
            return desc, doc
        desc = spec.choose_platform(doc.get("manifests") or [], platform, f"index {desc.get('digest')}")
    raise ImageError(f"manifest {desc.get('digest')}: indexes nested too deeply")
