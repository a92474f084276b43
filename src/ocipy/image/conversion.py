"""An image config -> the runtime's config.json (image-spec conversion.md).

Kept apart from unpacking so that ``image run`` from the store (whose
layers are already snapshots) does not load the layer machinery.
Deliberate choices: ``process.terminal`` is false (so ``ocipy image run``
works without a tty; umoci leaves it true) and ``root.readonly`` is false
(as umoci).
"""

from __future__ import annotations

import os
import stat
from typing import Any

from ocipy.errors import ImageError, KernelError

DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


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
