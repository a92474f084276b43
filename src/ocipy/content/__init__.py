"""The content core shared by ``ocipy image`` and the registry client.

* :mod:`ocipy.content.reference` -- the one reference grammar (skopeo's transports);
* :mod:`ocipy.content.walk` -- the one graph walker (copy, gc, export, validate)
  and the descent from an index to one image;
* :mod:`ocipy.content.store` -- the content-store interface (sources and
  destinations) and how a reference opens one;
* :mod:`ocipy.content.copy` -- copy: walk a source into a destination.
* :mod:`ocipy.content.progress` -- the progress callback of copies and unpacks,
  and its renderers (bars on a TTY, lines, quiet).

The digest check is :mod:`ocipy.spec.digest`; the media-type table, the
document validators and the platform rule are :mod:`ocipy.spec.image`.
"""
