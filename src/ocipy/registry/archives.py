"""``oci-archive:`` and ``docker-archive:`` through ``ocipy.image.archive``."""

from __future__ import annotations

from ocipy.errors import RegistryError
from ocipy.registry.reference import ImageReference
from ocipy.registry.transports import ImageDestination, ImageSource


def open_archive_source(ref: ImageReference) -> ImageSource:
    raise RegistryError(f"{ref}: {ref.transport} is not supported yet")


def open_archive_destination(ref: ImageReference) -> ImageDestination:
    raise RegistryError(f"{ref}: {ref.transport} is not supported yet")
