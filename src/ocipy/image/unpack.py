"""Image → runtime bundle (image-spec conversion.md).

The bundle is built in a temp directory next to the target and renamed into
place at the end, so a failed unpack leaves nothing behind.  Besides
``rootfs/`` and ``config.json`` the bundle holds:

* ``ocipy-image.json``: the layout and the manifest/config descriptors the
  bundle came from (what ``repack`` builds on);
* ``ocipy-mtree.json``: an mtree-like record of the unpacked tree (type,
  mode, owner, size, mtime, ctime, inode, symlink target per path) that
  ``repack`` diffs against.  A file's ctime changes whenever its content,
  mode, owner or xattrs change, so no content hashes are needed.

Generated config: starts from :func:`ocipy.spec.runtime.default_spec`, then
applies conversion.md.  Deliberate choices: ``process.terminal`` is false
(so ``ocipy image run`` works without a tty; umoci leaves it true) and
``root.readonly`` is false (as umoci).
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from ocipy.errors import ImageError, KernelError
from ocipy.image.layers import compression
from ocipy.image.layers.apply import Applier, ApplyOptions
from ocipy.image.layers.diff import scan_tree
from ocipy.image.layers.stream import LayerStream
from ocipy.image.store import Layout
from ocipy.spec.digest import VerifyingReader

BUNDLE_META = "ocipy-image.json"
BUNDLE_MTREE = "ocipy-mtree.json"
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def apply_layers(layout: Layout, manifest: dict[str, Any], config: dict[str, Any], rootfs: str,
                 options: ApplyOptions | None = None) -> None:
    """Apply the manifest's layers in order onto `rootfs`, verifying digests and diff_ids."""
    layers = manifest["layers"]
    diff_ids = config["rootfs"]["diff_ids"]
    if len(layers) != len(diff_ids):
        raise ImageError(f"config: rootfs.diff_ids has {len(diff_ids)} entries but the manifest "
                         f"has {len(layers)} layers")
    with Applier(rootfs, options) as applier:  # finish()es on the way out
        for i, desc in enumerate(layers):
            what = f"layer {desc['digest']}"
            # manifest.md: unknown layer media types must not be parsed; for unpacking
            # there is nothing sensible to do but refuse (before the blob is opened)
            codec = compression.for_media_type(desc["mediaType"], what)
            with layout.open_blob(desc["digest"]) as raw:
                verifier = VerifyingReader(raw, desc["digest"], desc.get("size"), "layer")
                stream = LayerStream(verifier, codec, what, applier.budget)
                applier.apply(stream, what)
                stream.drain()
                verifier.finish()
            diff_id = stream.diff_id() or desc["digest"]
            want = diff_ids[i]
            if want.partition(":")[0] == diff_id.partition(":")[0] and want != diff_id:
                raise ImageError(f"{what}: uncompressed digest {diff_id} does not match "
                                 f"config rootfs.diff_ids[{i}] {want}")


# ---------------------------------------------------------------------------
# users and groups, read through the rootfs with the kernel's help


def _read_in_root(rootfs: str, path: str) -> str | None:
    from ocipy.linux.syscalls import RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS, openat2

    root = os.open(rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        try:
            fd = openat2(root, path, os.O_RDONLY | os.O_NONBLOCK, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)
        except KernelError:
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            with os.fdopen(os.dup(fd), "rb") as f:
                return f.read(16 << 20).decode("utf-8", "replace")
        finally:
            os.close(fd)
    finally:
        os.close(root)


def _table(text: str | None, fields: int) -> list[list[str]]:
    rows = []
    for line in (text or "").splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) >= fields:
            rows.append(parts)
    return rows


def resolve_user(rootfs: str, user: str) -> dict[str, Any]:
    """conversion.md Config.User -> process.user, through rootfs /etc/passwd and /etc/group."""
    name, _, group = user.partition(":")
    passwd = _table(_read_in_root(rootfs, "/etc/passwd"), 7)
    groups = _table(_read_in_root(rootfs, "/etc/group"), 4)
    pw: list[str] | None = None
    if name.isdigit():
        # conversion.md: "If the values of user or group in Config.User are numeric (uid or
        # gid) then the values MUST be copied verbatim to process.user.uid and process.user.gid"
        uid = int(name)
        pw = next((p for p in passwd if p[2] == name), None)
    else:
        pw = next((p for p in passwd if p[0] == name), None)
        if pw is None:
            # conversion.md: "If Config.User does not correspond to a user in the container's
            # context, the converter MUST return an error."
            raise ImageError(f"config.User {user!r}: no user {name!r} in the rootfs's /etc/passwd")
        try:
            uid = int(pw[2])
        except ValueError:
            raise ImageError(f"config.User {user!r}: /etc/passwd has a bad uid for {name!r}") from None
    result: dict[str, Any] = {"uid": uid}
    if group:
        if group.isdigit():
            result["gid"] = int(group)
        else:
            gr = next((g for g in groups if g[0] == group), None)
            if gr is None:
                raise ImageError(f"config.User {user!r}: no group {group!r} in the rootfs's /etc/group")
            result["gid"] = int(gr[2])
        return result
    gid = 0
    if pw is not None:
        try:
            gid = int(pw[3])
        except ValueError:
            gid = 0
    result["gid"] = gid
    if not name.isdigit() and pw is not None:
        # conversion.md: "a converter SHOULD set the value of process.user.additionalGids"
        extra = []
        for g in groups:
            members = [m for m in g[3].split(",") if m]
            if name in members:
                try:
                    extra.append(int(g[2]))
                except ValueError:
                    continue
        if extra:
            result["additionalGids"] = sorted(set(extra))
    return result


# ---------------------------------------------------------------------------
# conversion


def runtime_config(image_config: dict[str, Any], rootfs: str) -> dict[str, Any]:
    """The runtime config.json for an image config (conversion.md)."""
    from ocipy.spec.runtime import default_spec

    rc = default_spec()
    cfg = image_config.get("config") or {}
    proc = rc["process"]
    proc["terminal"] = False  # deliberate: `ocipy image run` must work without a tty
    rc["root"] = {"path": "rootfs", "readonly": False}
    # conversion.md: "If both Config.Entrypoint and Config.Cmd are specified, the converter
    # MUST append the value of Config.Cmd to the value of Config.Entrypoint"
    args = list(cfg.get("Entrypoint") or []) + list(cfg.get("Cmd") or [])
    if args:
        proc["args"] = args
    env = list(cfg.get("Env") or [])
    names = {e.partition("=")[0] for e in env}
    if "PATH" not in names:
        env.insert(0, DEFAULT_PATH)  # MAY add entries, SHOULD NOT override the image's
    proc["env"] = env
    proc["cwd"] = cfg.get("WorkingDir") or "/"
    if cfg.get("User"):
        proc["user"] = resolve_user(rootfs, cfg["User"])
    annotations: dict[str, str] = {}
    for field, key in (("os", "os"), ("architecture", "architecture"), ("variant", "variant"),
                       ("os.version", "os.version"), ("author", "author"), ("created", "created")):
        if image_config.get(field):
            annotations[f"org.opencontainers.image.{key}"] = str(image_config[field])
    if image_config.get("os.features"):
        annotations["org.opencontainers.image.os.features"] = ",".join(image_config["os.features"])
    if cfg.get("StopSignal"):
        annotations["org.opencontainers.image.stopSignal"] = cfg["StopSignal"]
    if cfg.get("ExposedPorts"):
        annotations["org.opencontainers.image.exposedPorts"] = ",".join(sorted(cfg["ExposedPorts"]))
    # conversion.md: on conflict "the value specified in Config.Labels MUST take precedence"
    annotations.update(cfg.get("Labels") or {})
    if annotations:
        rc["annotations"] = annotations
    return rc


def write_json(path: str, doc: Any, mode: int = 0o644) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    # json.dumps, not json.dump: only the one-shot call uses the C encoder (the mtree of
    # a large rootfs took ~40 ms through the pure-Python one)
    text = json.dumps(doc, indent=2 if path.endswith("config.json") else None)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def unpack(layout: Layout, manifest_desc: dict[str, Any], bundle: str,
           options: ApplyOptions | None = None, ref: str | None = None) -> dict[str, Any]:
    """Unpack the image `manifest_desc` of `layout` into a new bundle directory.

    `bundle` must not exist (or be an empty directory).  Returns the runtime config.
    """
    import tempfile

    from ocipy import fstree

    bundle = os.path.abspath(bundle)
    if os.path.lexists(bundle):
        if not os.path.isdir(bundle) or os.path.islink(bundle) or os.listdir(bundle):
            raise ImageError(f"bundle {bundle}: already exists and is not an empty directory")
    parent = os.path.dirname(bundle)
    if not os.path.isdir(parent):
        raise ImageError(f"bundle {bundle}: parent directory does not exist")
    with layout.lock(shared=True):
        manifest = layout.read_manifest(manifest_desc)
        config = layout.read_config(manifest["config"])
        tmp = tempfile.mkdtemp(prefix=".ocipy-unpack-", dir=parent)
        try:
            rootfs = os.path.join(tmp, "rootfs")
            os.mkdir(rootfs, 0o755)
            apply_layers(layout, manifest, config, rootfs, options)
            rc = runtime_config(config, rootfs)
            write_json(os.path.join(tmp, "config.json"), rc)
            write_json(os.path.join(tmp, BUNDLE_META), {
                "layout": layout.path, "ref": ref, "manifest": manifest_desc,
                "config": manifest["config"],
                # for `image run`: podman's rules replace the Cmd and keep the Entrypoint
                "entrypoint": (config.get("config") or {}).get("Entrypoint"),
                "cmd": (config.get("config") or {}).get("Cmd")})
            write_json(os.path.join(tmp, BUNDLE_MTREE), scan_tree(rootfs), 0o600)
            os.chmod(tmp, 0o700)
            if os.path.isdir(bundle):
                os.rmdir(bundle)
            os.rename(tmp, bundle)
        except BaseException:
            fstree.remove_quietly(tmp)  # any depth; a non-root user's 0500 dirs included
            raise
    return rc
