"""Building images in a layout: new, tag, rm, config, add-layer, repack.

Every change writes new blobs (config, manifest) and then re-points the tag
in index.json, all under the layout's exclusive lock.
"""

from __future__ import annotations

import copy
import os
import stat
from typing import Any

from ocipy.errors import ImageError
from ocipy.image.layers.write import LayerWriter
from ocipy.image.store import Layout
from ocipy.spec import image as spec


def now_rfc3339() -> str:
    """Current UTC time (or $SOURCE_DATE_EPOCH, for reproducible builds) in RFC 3339."""
    import time

    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    t = int(epoch) if epoch and epoch.isdigit() else time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def set_tag(layout: Layout, tag: str, desc: dict[str, Any]) -> None:
    """Point `tag` at `desc` in index.json (replacing what it named)."""
    validate_tag(tag)
    entry = copy.deepcopy(desc)
    entry["annotations"] = dict(entry.get("annotations") or {})
    entry["annotations"][spec.ANNOTATION_REF_NAME] = tag

    def change(idx: dict[str, Any]) -> None:
        idx["manifests"] = [d for d in idx["manifests"]
                            if (d.get("annotations") or {}).get(spec.ANNOTATION_REF_NAME) != tag]
        idx["manifests"].append(entry)

    layout.update_index(change)


def validate_tag(tag: str) -> None:
    # image-layout.md / annotations.md: ref.name components are alphanum plus separators
    import re

    if not tag or not re.match(r"^[A-Za-z0-9]+(?:(?:[-._:@+/]|--)[A-Za-z0-9]+)*$", tag) or len(tag) > 255:
        raise ImageError(f"tag {tag!r}: not a valid reference name")


def remove_tag(layout: Layout, tag: str) -> None:
    layout.resolve(tag)  # ImageError if missing

    def change(idx: dict[str, Any]) -> None:
        idx["manifests"] = [d for d in idx["manifests"]
                            if (d.get("annotations") or {}).get(spec.ANNOTATION_REF_NAME) != tag]

    layout.update_index(change)


def new_image(layout: Layout, tag: str, platform: dict[str, str] | None = None) -> dict[str, Any]:
    """An empty image (no layers) named `tag`; returns its manifest descriptor."""
    validate_tag(tag)
    p = platform or spec.host_platform()
    config: dict[str, Any] = {
        "created": now_rfc3339(),
        "architecture": p["architecture"],
        "os": p["os"],
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if p.get("variant"):
        config["variant"] = p["variant"]
    with layout.lock():
        cdesc = layout.put_json(config, spec.MEDIA_CONFIG)
        manifest = {"schemaVersion": 2, "mediaType": spec.MEDIA_MANIFEST, "config": cdesc, "layers": []}
        mdesc = layout.put_json(manifest, spec.MEDIA_MANIFEST)
        mdesc["platform"] = {k: v for k, v in p.items() if k in ("os", "architecture", "variant")}
        set_tag(layout, tag, mdesc)
    return mdesc


class Image:
    """A manifest + config of a layout being edited; save() writes both and re-tags."""

    def __init__(self, layout: Layout, tag: str) -> None:
        self.layout = layout
        self.tag = tag
        self.top = layout.resolve(tag)
        if self.top["mediaType"] not in spec.MANIFEST_TYPES:
            raise ImageError(f"tag {tag!r}: names an index ({self.top['mediaType']}); "
                             "edit one of its images instead")
        self.manifest = layout.read_manifest(self.top)
        self.config = layout.read_config(self.manifest["config"])

    def add_history(self, created_by: str, empty_layer: bool, comment: str | None = None,
                    author: str | None = None) -> None:
        entry: dict[str, Any] = {"created": now_rfc3339(), "created_by": created_by}
        if author:
            entry["author"] = author
        if comment:
            entry["comment"] = comment
        if empty_layer:
            entry["empty_layer"] = True
        self.config.setdefault("history", []).append(entry)

    def add_layer(self, desc: dict[str, Any], diff_id: str) -> None:
        self.manifest["layers"].append(desc)
        self.config["rootfs"]["diff_ids"].append(diff_id)

    def save(self) -> dict[str, Any]:
        spec.validate_config(self.config)
        self.config["created"] = self.config.get("created") or now_rfc3339()
        cdesc = self.layout.put_json(self.config, spec.MEDIA_CONFIG)
        self.manifest["config"] = cdesc
        self.manifest.setdefault("mediaType", spec.MEDIA_MANIFEST)
        spec.validate_manifest(self.manifest)
        mdesc = self.layout.put_json(self.manifest, spec.MEDIA_MANIFEST)
        plat = self.top.get("platform") or {
            "os": self.config["os"], "architecture": self.config["architecture"]}
        mdesc["platform"] = plat
        set_tag(self.layout, self.tag, mdesc)
        return mdesc


CONFIG_LISTS = ("entrypoint", "cmd", "env", "label", "port", "volume")


def configure(layout: Layout, tag: str, changes: dict[str, Any], history: str | None = None,
              no_history: bool = False) -> dict[str, Any]:
    """Edit an image config (umoci config).

    `changes` keys: entrypoint, cmd (lists), env (list of K=V, merged by name),
    workdir, user, label (list of K=V), port (list), volume (list),
    stop_signal, author, os, architecture, created, clear (list of field names).
    """
    with layout.lock():
        img = Image(layout, tag)
        cfg = img.config.setdefault("config", {})
        if cfg is None:
            cfg = img.config["config"] = {}
        fields = {"cmd": "Cmd", "entrypoint": "Entrypoint", "env": "Env", "workdir": "WorkingDir",
                  "user": "User", "label": "Labels", "labels": "Labels", "port": "ExposedPorts",
                  "ports": "ExposedPorts", "volume": "Volumes", "volumes": "Volumes",
                  "stop_signal": "StopSignal", "stopsignal": "StopSignal"}
        for name in changes.get("clear") or []:
            key = name.lower().replace("-", "_")
            if key in fields:
                cfg.pop(fields[key], None)
            elif key in ("author", "history"):
                img.config.pop(key, None)
            else:
                raise ImageError(f"--clear {name!r}: unknown field (one of {', '.join(sorted(set(fields)))}, author)")
        if changes.get("entrypoint") is not None:
            cfg["Entrypoint"] = list(changes["entrypoint"])
        if changes.get("cmd") is not None:
            cfg["Cmd"] = list(changes["cmd"])
        for kv in changes.get("env") or []:
            if "=" not in kv:
                raise ImageError(f"--env {kv!r}: expected NAME=VALUE")
            name = kv.partition("=")[0]
            env = [e for e in cfg.get("Env") or [] if e.partition("=")[0] != name]
            env.append(kv)
            cfg["Env"] = env
        if changes.get("workdir") is not None:
            cfg["WorkingDir"] = changes["workdir"]
        if changes.get("user") is not None:
            cfg["User"] = changes["user"]
        if changes.get("stop_signal") is not None:
            cfg["StopSignal"] = changes["stop_signal"]
        for kv in changes.get("label") or []:
            k, eq, v = kv.partition("=")
            if not eq or not k:
                raise ImageError(f"--label {kv!r}: expected KEY=VALUE")
            cfg.setdefault("Labels", {})
            if cfg["Labels"] is None:
                cfg["Labels"] = {}
            cfg["Labels"][k] = v
        for port in changes.get("port") or []:
            p = port if "/" in port else port + "/tcp"
            num, _, proto = p.partition("/")
            if not num.isdigit() or proto not in ("tcp", "udp", "sctp"):
                raise ImageError(f"--port {port!r}: expected PORT[/tcp|udp|sctp]")
            cfg.setdefault("ExposedPorts", {})
            cfg["ExposedPorts"][p] = {}
        for vol in changes.get("volume") or []:
            if not vol.startswith("/"):
                raise ImageError(f"--volume {vol!r}: must be an absolute path")
            cfg.setdefault("Volumes", {})
            cfg["Volumes"][vol] = {}
        for key in ("author", "os", "architecture", "created"):
            if changes.get(key) is not None:
                img.config[key] = changes[key]
        if not no_history:
            img.add_history(history or "ocipy image config", empty_layer=True,
                            author=changes.get("author"))
        return img.save()


def _layer_from_path(layout: Layout, path: str, compression: str, prefix: str = "") -> tuple[dict[str, Any], str]:
    writer = LayerWriter(layout, compression)
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            writer.add_tree(path, prefix)
        else:
            with open(path, "rb") as f:
                writer.copy_tar(f)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def add_layer(layout: Layout, tag: str, path: str, compression: str = "gzip",
              history: str | None = None) -> dict[str, Any]:
    """Append a layer made of directory `path` (its content becomes /) or tar file `path`."""
    if not os.path.exists(path):
        raise ImageError(f"add-layer: {path}: no such file or directory")
    with layout.lock():
        img = Image(layout, tag)
        desc, diff_id = _layer_from_path(layout, path, compression)
        img.add_layer(desc, diff_id)
        img.add_history(history or f"ocipy image add-layer {os.path.basename(path)}", empty_layer=False)
        return img.save()


# ---------------------------------------------------------------------------
# repack


def repack(layout: Layout, tag: str, bundle: str, compression: str = "gzip",
           history: str | None = None, mask_volumes: bool = True) -> dict[str, Any]:
    """A new image `tag`: the bundle's base image plus a layer with the rootfs's changes."""
    import json

    from ocipy.image.layers.diff import add_changes, scan_tree
    from ocipy.image.unpack import BUNDLE_META, BUNDLE_MTREE, write_json

    bundle = os.path.abspath(bundle)
    rootfs = os.path.join(bundle, "rootfs")
    try:
        with open(os.path.join(bundle, BUNDLE_META)) as f:
            meta = json.load(f)
        with open(os.path.join(bundle, BUNDLE_MTREE)) as f:
            recorded = json.load(f)
    except FileNotFoundError as e:
        raise ImageError(f"repack: {bundle}: not a bundle made by `ocipy image unpack` ({e.filename} missing)") from None
    except ValueError as e:
        raise ImageError(f"repack: {bundle}: corrupt bundle metadata: {e}") from None
    if not os.path.isdir(rootfs):
        raise ImageError(f"repack: {rootfs}: no such directory")
    with layout.lock():
        base_desc = meta["manifest"]
        manifest = layout.read_manifest(base_desc)
        config = layout.read_config(manifest["config"])
        masked: list[str] = []
        if mask_volumes:
            vols = (config.get("config") or {}).get("Volumes") or {}
            # conversion.md: "data in these paths SHOULD NOT be included in the new image"
            masked = [v.strip("/") for v in vols if v.strip("/")]
        writer = LayerWriter(layout, compression)
        try:
            add_changes(writer, rootfs, recorded, masked)
            desc, diff_id = writer.finish()
        except BaseException:
            writer.abort()
            raise
        img = Image.__new__(Image)
        img.layout, img.tag = layout, tag
        img.top = base_desc
        img.manifest, img.config = manifest, config
        img.add_layer(desc, diff_id)
        img.add_history(history or "ocipy image repack", empty_layer=False)
        mdesc = img.save()
    # the bundle now corresponds to the new image
    meta["manifest"] = mdesc
    meta["config"] = img.manifest["config"]
    meta["ref"] = tag
    write_json(os.path.join(bundle, BUNDLE_META), meta)
    write_json(os.path.join(bundle, BUNDLE_MTREE), scan_tree(rootfs), 0o600)
    return mdesc
