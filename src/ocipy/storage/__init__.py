"""The local image store: pulled images by name, each layer unpacked once.

On disk (root's default ``/var/lib/ocipy/storage``; ``--storage DIR`` or
``OCIPY_STORAGE`` choose another)::

    ROOT/                     0700
      lock                    flock: shared by pull/run/rm/tag, exclusive by prune
      content/                an OCI image layout holding every pulled blob; its
                              index.json names the images (ref.name = NAME:TAG,
                              fully qualified: docker.io/library/busybox:latest)
      snapshots/<hex>/        one unpacked layer, keyed by its chain id
                              (config.md "Layer ChainID"), in overlay form
                              (whiteouts as 0:0 char devices, opaque dirs as
                              trusted.overlay.opaque=y); complete once renamed
                              into place
      snapshots/.tmp-*        unpacks in progress: never trusted, removed by the
                              next image run or prune once no process holds them
      containers/<id>/        one per container made by ``ocipy image run``: the
                              bundle (config.json, rootfs/ -- an overlay of the
                              snapshots), upper/ and work/

* :mod:`ocipy.storage.snapshots` -- layer snapshots and container root
  filesystems (overlayfs, or a copy where overlay cannot be used).
* :mod:`ocipy.storage.names` -- the store's names, directories and lock: what
  reading an image by name needs (the content core opens store names with it).
* :mod:`ocipy.storage.store` -- pull, list, remove, tag, prune.
* :mod:`ocipy.storage.containers` -- the containers' directories.
"""
