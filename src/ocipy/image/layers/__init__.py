"""Layers (image-spec layer.md), one module per job.

* :mod:`.compression` -- the codec table (gzip, zstd, none) every reader and writer uses
* :mod:`.stream`      -- reading a blob: decompressed tar stream, entries, size budget
* :mod:`.rootdirs`    -- directories of the rootfs being unpacked, resolved inside it
* :mod:`.apply`       -- applying layers onto a rootfs (:class:`~.apply.Applier`)
* :mod:`.whiteout`    -- whiteouts and opaque whiteouts
* :mod:`.workers`     -- the threads that create files during an unpack
* :mod:`.write`       -- writing a layer blob (:class:`~.write.LayerWriter`)
* :mod:`.diff`        -- the recorded tree of a bundle and repack's diff against it

Nothing is imported here: importing a submodule costs only what it needs.
"""
