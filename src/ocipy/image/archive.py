"""The two archive formats people exchange: ``oci-archive`` (a tar of an image
layout) and ``docker-archive`` (the ``docker save`` format: manifest.json, a
Docker v2 schema2 image config, uncompressed layer tars): reading their
members, and writing them from a layout.  Copying into and out of them is
:mod:`ocipy.content.archives` (the content-store side).

Reading never extracts an archive as such: only the names an archive format
defines are read (``oci-layout``, ``index.json``, ``blobs/<alg>/<hex>``;
the files manifest.json names), and every blob is verified before it is
stored.  Writing goes to a temp file next to the target, renamed at the end.
"""

from __future__ import annotations

import json
import os
import tarfile
import tempfile
from typing import IO, Any

from ocipy import fsutil
from ocipy.content.walk import walk
from ocipy.errors import ImageError
from ocipy.image.store import CHUNK, Layout, dumps
from ocipy.spec import digest as _digest
from ocipy.spec import image as spec
from ocipy.spec.digest import VerifyingReader


def image_blobs(layout: Layout, desc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every descriptor reachable from `desc` (itself first), documents verified."""
    return walk(layout.read_manifest, [desc])

MAX_JSON = 4 << 20


# ---------------------------------------------------------------------------
# oci-archive


def _safe_layout_name(name: str) -> str | None:
    """The layout-relative name of an archive member, or None if it is not part of a layout."""
    parts = [p for p in name.split("/") if p and p != "."]
    if not parts or ".." in parts:
        return None
    if parts in (["oci-layout"], ["index.json"]):
        return parts[0]
    if len(parts) == 3 and parts[0] == "blobs":
        try:
            _digest.parse(f"{parts[1]}:{parts[2]}", "blob name")
        except ImageError:
            return None
        return "/".join(parts)
    return None


def extract_oci_archive(path: str, into: str) -> Layout:
    """Write the layout members of oci-archive `path` (only those) into the empty directory
    `into`; return it opened.  Blobs are not verified here: they are whenever they are read."""
    import shutil

    try:
        try:
            tf = tarfile.open(path, mode="r|*")
        except (OSError, tarfile.TarError) as e:
            raise ImageError(f"oci-archive {path}: cannot read: {e}") from None
        with tf:
            for member in tf:
                name = _safe_layout_name(member.name)
                if name is None or not member.isreg():
                    continue
                target = os.path.join(into, name)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(src, out, CHUNK)
    except tarfile.TarError as e:
        raise ImageError(f"oci-archive {path}: corrupt archive: {e}") from None
    except FileExistsError as e:
        raise ImageError(f"oci-archive {path}: {os.path.relpath(e.filename or '', into)} appears twice") from None
    return Layout.open(into)


def _atomic_output(path: str) -> fsutil.AtomicFile:
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ImageError(f"{path}: directory {directory} does not exist")
    return fsutil.AtomicFile(directory, 0o644, ".ocipy-archive-")


class _Out:
    """An AtomicFile as the file object tarfile writes to."""

    def __init__(self, f: fsutil.AtomicFile) -> None:
        self.f = f

    def write(self, data: bytes) -> int:
        return self.f.write(data)

    def tell(self) -> int:
        return self.f.size


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tf.addfile(info, io.BytesIO(data))


def _add_dir(tf: tarfile.TarFile, name: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    tf.addfile(info)


def export_oci_archive(src: Layout, desc: dict[str, Any], path: str, tag: str | None) -> None:
    """Write image `desc` of `src` as an oci-archive at `path` (named `tag` inside)."""
    with src.lock(shared=True):
        blobs = image_blobs(src, desc)
        entry = {k: v for k, v in desc.items() if k != "annotations"}
        annotations = {k: v for k, v in (desc.get("annotations") or {}).items() if k != spec.ANNOTATION_REF_NAME}
        if tag:
            annotations[spec.ANNOTATION_REF_NAME] = tag
        if annotations:
            entry["annotations"] = annotations
        index = {"schemaVersion": 2, "mediaType": spec.MEDIA_INDEX, "manifests": [entry]}
        out = _atomic_output(path)
        with out:
            with tarfile.open(fileobj=_Out(out), mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                _add_bytes(tf, "oci-layout", dumps({"imageLayoutVersion": spec.IMAGE_LAYOUT_VERSION}))
                _add_bytes(tf, "index.json", dumps(index))
                _add_dir(tf, "blobs")
                for alg in sorted({d["digest"].partition(":")[0] for d in blobs}):
                    _add_dir(tf, f"blobs/{alg}")
                for d in blobs:
                    alg, enc = _digest.parse(d["digest"])
                    with src.open_blob(d["digest"]) as blob:
                        reader = VerifyingReader(blob, d["digest"], d.get("size"))
                        info = tarfile.TarInfo(f"blobs/{alg}/{enc}")
                        info.size = d["size"]
                        info.mode = 0o644
                        tf.addfile(info, reader)
                        reader.finish()
            out.commit(path)


# ---------------------------------------------------------------------------
# docker-archive


def _docker_name(ref: str) -> str:
    name = ref
    if ":" not in name.rpartition("/")[2]:
        name += ":latest"
    return name


def _norm_docker(name: str) -> str:
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


def _read_member(tf: tarfile.TarFile, name: str, what: str, limit: int = MAX_JSON) -> bytes:
    try:
        member = tf.getmember(name)
    except KeyError:
        raise ImageError(f"docker-archive: {what} {name!r} is missing from the archive") from None
    if member.size > limit:
        raise ImageError(f"docker-archive: {what} {name!r} is too large")
    f = tf.extractfile(member)
    if f is None:
        raise ImageError(f"docker-archive: {what} {name!r} is not a file")
    return f.read(limit + 1)


def docker_archive_image(tf: tarfile.TarFile, path: str, ref: str | None) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """The manifest.json entry of image `ref` (a name, ``@N``, or None for the only one) of
    `docker save` archive `tf`, its config's bytes and the validated config."""
    manifest = spec.load_json(_read_member(tf, "manifest.json", "manifest"), f"docker-archive {path}: manifest.json")
    if not isinstance(manifest, list) or not all(isinstance(m, dict) for m in manifest):
        raise ImageError(f"docker-archive {path}: manifest.json: must be an array of objects")
    if ref:
        if ref.startswith("@") and ref[1:].isdigit():
            n = int(ref[1:])
            chosen = [manifest[n]] if n < len(manifest) else []
        else:
            want = _norm_docker(_docker_name(ref))
            chosen = [m for m in manifest if want in [_norm_docker(t) for t in m.get("RepoTags") or []]]
        if not chosen:
            raise ImageError(f"docker-archive {path}: no image {ref!r} in manifest.json")
    else:
        chosen = manifest
    if len(chosen) != 1:
        raise ImageError(f"docker-archive {path}: {len(chosen)} images in manifest.json; name one")
    entry = chosen[0]
    if not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
        raise ImageError(f"docker-archive {path}: manifest.json: Config and Layers are required")
    config_bytes = _read_member(tf, entry["Config"], "config")
    config = spec.load_json(config_bytes, f"docker-archive {path}: config {entry['Config']}")
    spec.validate_config(config, f"config {entry['Config']}")
    diff_ids = config["rootfs"]["diff_ids"]
    if len(diff_ids) != len(entry["Layers"]):
        raise ImageError(f"docker-archive {path}: {len(entry['Layers'])} layers but the config "
                         f"has {len(diff_ids)} diff_ids")
    return entry, config_bytes, config


def export_docker_archive(src: Layout, desc: dict[str, Any], path: str, ref: str | None,
                          platform: dict[str, str] | None = None) -> None:
    """Write image `desc` of `src` in the `docker save` format at `path`."""
    from ocipy.image.layers.stream import open_layer_stream

    with src.lock(shared=True):
        mdesc, manifest = src.resolve_image(desc, platform)
        config_bytes = src.read_blob(manifest["config"]["digest"], manifest["config"]["size"])
        config = src.read_config(manifest["config"])
        diff_ids = config["rootfs"]["diff_ids"]
        if len(diff_ids) != len(manifest["layers"]):
            raise ImageError(f"manifest {mdesc['digest']}: layer count does not match the config's diff_ids")
        config_name = manifest["config"]["digest"].partition(":")[2] + ".json"
        out = _atomic_output(path)
        with out:
            with tarfile.open(fileobj=_Out(out), mode="w", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
                layer_names = []
                for i, ldesc in enumerate(manifest["layers"]):
                    name = diff_ids[i].partition(":")[2] + ".tar"
                    if name in layer_names:
                        layer_names.append(name)  # the same layer twice: one file
                        continue
                    with tempfile.TemporaryFile(dir=os.path.dirname(out.tmp)) as scratch:
                        _uncompressed_layer(src, ldesc, diff_ids[i], scratch, open_layer_stream)
                        info = tarfile.TarInfo(name)
                        info.size = scratch.tell()
                        info.mode = 0o644
                        scratch.seek(0)
                        tf.addfile(info, scratch)
                    layer_names.append(name)
                _add_bytes(tf, config_name, config_bytes)
                tags = [_docker_name(ref)] if ref else None
                _add_bytes(tf, "manifest.json", json.dumps(
                    [{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]).encode())
                if ref:
                    repo, _, t = _docker_name(ref).rpartition(":")
                    _add_bytes(tf, "repositories", json.dumps(
                        {repo: {t: diff_ids[-1].partition(":")[2] if diff_ids else ""}}).encode())
            out.commit(path)


def _uncompressed_layer(src: Layout, desc: dict[str, Any], diff_id: str, out: IO[bytes], opener: Any) -> None:
    what = f"layer {desc['digest']}"
    with src.open_blob(desc["digest"]) as raw:
        verifier = VerifyingReader(raw, desc["digest"], desc.get("size"), "layer")
        stream = opener(verifier, desc["mediaType"], what, [1 << 62])
        hasher = _digest.hasher(diff_id.partition(":")[0])
        while True:
            data = stream.read(CHUNK)
            if not data:
                break
            hasher.update(data)
            out.write(data)
        verifier.finish()
    got = f"{diff_id.partition(':')[0]}:{hasher.hexdigest()}"
    if got != diff_id:
        raise ImageError(f"{what}: uncompressed digest {got} does not match the config's diff_id {diff_id}")
