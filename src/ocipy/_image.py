"""Internal: :class:`ocipy.api_image.Image` (import it from ocipy.api_image).

An ``Image`` is what :func:`ocipy.api_image.open` read about one image, from
any reference: its descriptors, manifest and config, fixed at open.  Its
methods are the module's functions (unpack, copy, export, the build steps)
applied to *that* image: a reference that can name a digest (``oci:``,
``docker://``) is pinned to the manifest's, so a tag that moves afterwards
does not change what ``unpack`` or ``copy_to`` read.
"""

from __future__ import annotations

import copy as _copy
from typing import Any

from ocipy import api_image
from ocipy.content.progress import ProgressCallback
from ocipy.errors import ImageError


def _platform_text(platform: str | dict[str, str] | None) -> str | None:
    if platform is None or isinstance(platform, str):
        return platform
    text = f"{platform.get('os', '')}/{platform.get('architecture', '')}"
    return text + (f"/{platform['variant']}" if platform.get("variant") else "")


class Image:
    """One image, read from a layout, an archive or a registry.

    Get one from :func:`ocipy.api_image.open`.  Attributes (read at open):
    ``reference``, ``descriptor`` (what the reference names: the manifest's,
    or an index's), ``digest`` (the image manifest's), ``manifest``,
    ``config`` (the image config document), ``layers`` (their descriptors),
    ``platform``, ``tags``, ``size`` (the layers' bytes, compressed),
    ``created``, ``labels``, ``entrypoint``, ``cmd``, ``env``.

    The build steps (:meth:`add_layer`, :meth:`configure`, :meth:`tag`) edit
    an image in an OCI layout named by a tag, ``oci:DIR:TAG``, and return a
    new ``Image`` for the result; this one keeps describing what it read."""

    def __init__(self, reference: str, info: dict[str, Any], *, platform: str | None = None,
                 options: Any = None) -> None:  # fmt: skip
        from ocipy.content import reference as _reference

        self.reference = reference
        self.options = options
        self._info = info
        self._requested_platform = platform
        self._ref = _reference.parse(reference)
        cfg = info["config"]
        inner = cfg.get("config") if isinstance(cfg.get("config"), dict) else {}
        self._inner: dict[str, Any] = inner
        plat = {"os": str(cfg.get("os", "")), "architecture": str(cfg.get("architecture", ""))}
        for key in ("variant", "os.version"):
            if cfg.get(key):
                plat[key] = str(cfg[key])
        self.platform: dict[str, str] = plat
        self.tags: list[str] = self._find_tags()

    # --- what was read ----------------------------------------------------
    @property
    def descriptor(self) -> dict[str, Any]:
        """The descriptor the reference names (an index's when it names one)."""
        return _copy.deepcopy(self._info["descriptor"])

    @property
    def digest(self) -> str:
        """The image manifest's digest (for an index: the manifest chosen for the platform)."""
        return str(self._info["digest"])

    @property
    def manifest(self) -> dict[str, Any]:
        """The image manifest (a copy)."""
        return _copy.deepcopy(self._info["manifest"])

    @property
    def config(self) -> dict[str, Any]:
        """The image config document (image-spec config.md)."""
        return _copy.deepcopy(self._info["config"])

    @property
    def layers(self) -> list[dict[str, Any]]:
        """The manifest's layer descriptors, base first."""
        return _copy.deepcopy(self._info["manifest"]["layers"])

    @property
    def size(self) -> int:
        """The layers' bytes as stored (compressed)."""
        return int(self._info["size"])

    @property
    def created(self) -> str | None:
        """The config's created time (RFC 3339), or None."""
        created = self._info["config"].get("created")
        return created if isinstance(created, str) else None

    @property
    def labels(self) -> dict[str, str]:
        """Config.Labels (a copy)."""
        return dict(self._inner.get("Labels") or {})

    @property
    def entrypoint(self) -> list[str] | None:
        """Config.Entrypoint (a copy), or None."""
        value = self._inner.get("Entrypoint")
        return list(value) if value is not None else None

    @property
    def cmd(self) -> list[str] | None:
        """Config.Cmd (a copy), or None."""
        value = self._inner.get("Cmd")
        return list(value) if value is not None else None

    @property
    def env(self) -> list[str]:
        """Config.Env (a copy)."""
        return list(self._inner.get("Env") or [])

    def inspect(self) -> dict[str, Any]:
        """What :func:`ocipy.api_image.inspect` gives for this reference (read at open)."""
        return _copy.deepcopy(self._info)

    def _find_tags(self) -> list[str]:
        """A layout's tags that name this image (its manifest, or the index it came from);
        elsewhere the tag in the reference, if it has one."""
        r = self._ref
        if r.transport == "oci":
            from ocipy.image.store import Layout

            mine = {self._info["descriptor"]["digest"], self._info["digest"]}
            return sorted(name for name, desc in Layout.open(r.path).tags() if desc.get("digest") in mine)
        if r.docker is not None:
            return [r.docker.tag] if r.docker.tag and not r.docker.digest else []
        return [r.tag] if r.tag else []

    def _pinned(self) -> tuple[str, str | None]:
        """(reference, platform) that read exactly this image: by the manifest's digest
        where the transport can name one, else the reference and the platform it was opened for."""
        r = self._ref
        if r.transport == "oci":
            return f"oci:{r.path}@{self.digest}", None
        if r.docker is not None:
            return "docker://" + str(r.docker.with_reference(digest=self.digest)), None
        return self.reference, _platform_text(self.platform)

    # --- using it ---------------------------------------------------------
    def unpack(self, bundle: str, progress: ProgressCallback | None = None, *,
               max_size: int | None = None) -> dict[str, Any]:
        """Unpack into a new runtime bundle (rootfs/ + config.json); returns the runtime config.
        `progress` sees each layer's compressed bytes (see :func:`ocipy.api_image.unpack`)."""
        ref, platform = self._pinned()
        return api_image.unpack(ref, bundle, platform, max_size, self.options, progress)

    def copy_to(self, destination: str, *, progress: ProgressCallback | None = None,
                dest_compress: str | None = None, options: Any = None) -> Image:
        """Copy this image to any reference (`options`: the destination registry's);
        returns the copy as an ``Image``."""
        ref, platform = self._pinned()
        api_image.copy(ref, destination, progress=progress, platform=platform, dest_compress=dest_compress,
                       src_options=self.options, dest_options=options)
        return api_image.open(destination, options=options)

    def export(self, destination: str) -> str:
        """Write this image as ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]``
        or ``oci:DIR:TAG`` (see :func:`ocipy.api_image.export`); returns the manifest digest.
        An oci-archive without a tag takes the image's tag, as ``export`` does."""
        from ocipy.content import reference

        ref, platform = self._pinned()
        dest = reference.parse(destination)
        if dest.transport == "oci-archive" and not dest.tag and self._ref.tag and self._ref.transport != "docker":
            destination = f"{destination}:{self._ref.tag}"
        return api_image.export(ref, destination, platform, self.options)

    # --- build steps (an image in a layout, by tag) -------------------------
    def _editable(self, step: str) -> tuple[str, str]:
        """(layout path, tag) of ``oci:DIR:TAG``, still naming what this object read."""
        r = self._ref
        if r.transport != "oci" or not r.tag:
            raise ImageError(f"{step}: {self.reference!r}: needs an image in a layout named by a tag "
                             "(oci:DIR:TAG); copy_to() one first")
        from ocipy.image.store import Layout

        now = Layout.open(r.path).resolve(r.tag)["digest"]
        if now != self._info["descriptor"]["digest"]:
            raise ImageError(f"{step}: {self.reference} names {now} now, not {self._info['descriptor']['digest']} "
                             "that this Image was opened on: open it again")
        return r.path, r.tag

    def _reopen(self) -> Image:
        return api_image.open(self.reference, platform=self._requested_platform, options=self.options)

    def add_layer(self, path: str, *, compression: str = "gzip", history: str | None = None) -> Image:
        """Append a layer made of a directory (its content becomes /) or a tar file;
        the tag then names the new image, which is returned."""
        self._editable("add_layer")
        api_image.add_layer(self.reference, path, compression, history)
        return self._reopen()

    def configure(self, *, history: str | None = None, no_history: bool = False, **changes: Any) -> Image:
        """Edit the config (entrypoint, cmd, env, workdir, user, label, port, volume,
        stop_signal, author, os, architecture, created, clear: see
        :func:`ocipy.api_image.configure`); returns the new image."""
        self._editable("configure")
        api_image.configure(self.reference, history=history, no_history=no_history, **changes)
        return self._reopen()

    def tag(self, new_tag: str) -> Image:
        """Give this image (what the reference named: manifest or index) another tag in
        its layout; returns it under the new tag."""
        from ocipy.image import build
        from ocipy.image.store import Layout

        r = self._ref
        if r.transport != "oci":
            raise ImageError(f"tag: {self.reference!r}: only an image in a layout (oci:DIR) is tagged; "
                             "copy_to() one first")
        layout = Layout.open(r.path)
        desc = self.descriptor
        with layout.lock():
            if not layout.has_blob(desc["digest"]):
                raise ImageError(f"tag: {self.reference}: {desc['digest']} is not in the layout any more")
            build.set_tag(layout, new_tag, desc)
        return api_image.open(f"oci:{r.path}:{new_tag}", platform=self._requested_platform, options=self.options)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and (self.reference, self.digest) == (other.reference, other.digest)

    def __hash__(self) -> int:
        return hash((self.reference, self.digest))

    def __repr__(self) -> str:
        return f"Image({self.reference!r}, digest={self.digest!r})"


def open_image(reference: str, *, platform: str | dict[str, str] | None = None, options: Any = None,
               storage: str | None = None) -> Image:  # fmt: skip
    """Read an image from any reference (see :func:`ocipy.api_image.open`).  A store
    name is read as the store's layout names it (``oci:STORE/content:FULL-NAME``),
    so its tags are the store's names for it."""
    from ocipy.content import reference as _reference
    from ocipy.storage.names import StoreRoot, names_layout

    parsed = _reference.parse(reference)
    if parsed.transport == "oci" and not names_layout(parsed):
        store = StoreRoot(storage)
        reference = f"oci:{store.content_path}:{store.get(parsed.text).name}"
    text = _platform_text(platform)
    info = api_image.inspect(reference, text, options)
    return Image(reference, info, platform=text, options=options)
