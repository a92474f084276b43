"""OCI image-spec documents: media types, and validation of descriptors,
manifests, indexes, image configs and the oci-layout file.

Documents stay plain dicts (what json.loads gives); the ``validate_*``
functions check them against the image-spec and raise
:class:`ocipy.errors.ImageError` naming the offending field.  Unknown fields
are ignored, as the spec requires.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

from ocipy.errors import ImageError
from ocipy.spec import digest as _digest

IMAGE_LAYOUT_VERSION = "1.0.0"

MEDIA_DESCRIPTOR = "application/vnd.oci.descriptor.v1+json"
MEDIA_LAYOUT = "application/vnd.oci.layout.header.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_EMPTY = "application/vnd.oci.empty.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_LAYER_GZIP = MEDIA_LAYER + "+gzip"
MEDIA_LAYER_ZSTD = MEDIA_LAYER + "+zstd"
MEDIA_LAYER_ND = "application/vnd.oci.image.layer.nondistributable.v1.tar"
MEDIA_LAYER_ND_GZIP = MEDIA_LAYER_ND + "+gzip"
MEDIA_LAYER_ND_ZSTD = MEDIA_LAYER_ND + "+zstd"

# Docker image manifest v2 schema 2 (read from docker-archive and registries)
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

MANIFEST_TYPES = (MEDIA_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)
CONFIG_TYPES = (MEDIA_CONFIG, DOCKER_CONFIG)

# layer media type -> compression ("none", "gzip", "zstd")
LAYER_COMPRESSION: dict[str, str] = {
    MEDIA_LAYER: "none",
    MEDIA_LAYER_GZIP: "gzip",
    MEDIA_LAYER_ZSTD: "zstd",
    MEDIA_LAYER_ND: "none",
    MEDIA_LAYER_ND_GZIP: "gzip",
    MEDIA_LAYER_ND_ZSTD: "zstd",
    DOCKER_LAYER: "none",
    DOCKER_LAYER_GZIP: "gzip",
    DOCKER_LAYER_FOREIGN: "gzip",
}
COMPRESSED_LAYER_TYPE = {"none": MEDIA_LAYER, "gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}

ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
ANNOTATION_CREATED = "org.opencontainers.image.created"

# RFC 6838 section 4.2: type-name "/" subtype-name, each restricted-name
_RESTRICTED = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_MEDIA_TYPE = re.compile(rf"^{_RESTRICTED}/{_RESTRICTED}$")


def _fail(field: str, problem: str) -> ImageError:
    return ImageError(f"{field}: {problem}")


def _require_object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise _fail(what, "must be a JSON object")
    return doc


def validate_media_type(value: Any, field: str) -> str:
    # descriptor.md: "Values MUST comply with RFC 6838, including the naming
    # requirements in its section 4.2."
    if not isinstance(value, str) or not _MEDIA_TYPE.match(value):
        raise _fail(field, f"{value!r} is not a valid media type (RFC 6838)")
    return value


def _validate_annotations(value: Any, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _fail(field, "must be a map of string to string")


def _validate_string_list(value: Any, field: str) -> None:
    if value is None:
        return
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(field, "must be an array of strings")


def validate_descriptor(desc: Any, field: str = "descriptor") -> dict[str, Any]:
    """Check a content descriptor (descriptor.md); return it."""
    d = _require_object(desc, field)
    if "mediaType" not in d:
        raise _fail(f"{field}.mediaType", "is required")
    validate_media_type(d["mediaType"], f"{field}.mediaType")
    if "digest" not in d:
        raise _fail(f"{field}.digest", "is required")
    _digest.parse(d["digest"], f"{field}.digest")
    size = d.get("size")
    # descriptor.md: "size ... This REQUIRED property specifies the size, in bytes,
    # of the raw content. ... The size MUST NOT be negative."
    if isinstance(size, bool) or not isinstance(size, int):
        raise _fail(f"{field}.size", "is required and must be an integer")
    if size < 0:
        raise _fail(f"{field}.size", "must not be negative")
    _validate_string_list(d.get("urls"), f"{field}.urls")
    _validate_annotations(d.get("annotations"), f"{field}.annotations")
    if "data" in d:
        data = d["data"]
        if not isinstance(data, str):
            raise _fail(f"{field}.data", "must be a base64 string")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise _fail(f"{field}.data", "is not valid base64") from None
        # descriptor.md: "The decoded data MUST be identical to the referenced content"
        _digest.verify_bytes(raw, d["digest"], size, f"{field}.data")
    if "artifactType" in d:
        validate_media_type(d["artifactType"], f"{field}.artifactType")
    if "platform" in d:
        validate_platform(d["platform"], f"{field}.platform")
    return d


def validate_platform(p: Any, field: str = "platform") -> dict[str, Any]:
    p = _require_object(p, field)
    assert isinstance(p, dict)
    for key in ("architecture", "os"):
        if not isinstance(p.get(key), str) or not p[key]:
            raise _fail(f"{field}.{key}", "is required and must be a string")
    for key in ("os.version", "variant"):
        if key in p and not isinstance(p[key], str):
            raise _fail(f"{field}.{key}", "must be a string")
    _validate_string_list(p.get("os.features"), f"{field}.os.features")
    return p


def _check_schema_version(doc: dict[str, Any], what: str) -> None:
    # manifest.md / image-index.md: "For this version of the specification, this MUST be 2"
    v = doc.get("schemaVersion")
    if v != 2 or isinstance(v, bool):
        raise _fail(f"{what}.schemaVersion", f"must be 2, not {v!r}")


def validate_manifest(doc: Any, what: str = "manifest") -> dict[str, Any]:
    """Check an image manifest (manifest.md); Docker schema2 manifests are accepted too."""
    m = _require_object(doc, what)
    _check_schema_version(m, what)
    mt = m.get("mediaType")
    if mt is not None and mt not in MANIFEST_TYPES:
        # manifest.md: "When used, this field MUST contain the media type
        # application/vnd.oci.image.manifest.v1+json" -- no manifest/index confusion.
        raise _fail(f"{what}.mediaType", f"{mt!r} is not an image manifest media type")
    if "manifests" in m:
        raise _fail(what, "has a 'manifests' field: this is an index, not a manifest")
    if "config" not in m:
        raise _fail(f"{what}.config", "is required")
    cfg = validate_descriptor(m["config"], f"{what}.config")
    layers = m.get("layers")
    if not isinstance(layers, list):
        raise _fail(f"{what}.layers", "is required and must be an array")
    for i, layer in enumerate(layers):
        validate_descriptor(layer, f"{what}.layers[{i}]")
    if "artifactType" in m:
        validate_media_type(m["artifactType"], f"{what}.artifactType")
    elif cfg["mediaType"] == MEDIA_EMPTY:
        # manifest.md: "If the config.mediaType is set to the empty value, the
        # artifactType MUST be defined."
        raise _fail(f"{what}.artifactType", "is required when config.mediaType is the empty value")
    if "subject" in m:
        validate_descriptor(m["subject"], f"{what}.subject")
    _validate_annotations(m.get("annotations"), f"{what}.annotations")
    return m


def validate_index(doc: Any, what: str = "index") -> dict[str, Any]:
    """Check an image index (image-index.md); Docker manifest lists are accepted too."""
    idx = _require_object(doc, what)
    _check_schema_version(idx, what)
    mt = idx.get("mediaType")
    if mt is not None and mt not in INDEX_TYPES:
        # image-index.md: "When used, this field MUST contain the media type
        # application/vnd.oci.image.index.v1+json"
        raise _fail(f"{what}.mediaType", f"{mt!r} is not an image index media type")
    if "config" in idx or "layers" in idx:
        raise _fail(what, "has 'config'/'layers' fields: this is a manifest, not an index")
    manifests = idx.get("manifests")
    # image-index.md: "While this property MUST be present, the size of the array MAY be zero."
    if not isinstance(manifests, list):
        raise _fail(f"{what}.manifests", "is required and must be an array")
    for i, desc in enumerate(manifests):
        validate_descriptor(desc, f"{what}.manifests[{i}]")
    if "artifactType" in idx:
        validate_media_type(idx["artifactType"], f"{what}.artifactType")
    if "subject" in idx:
        validate_descriptor(idx["subject"], f"{what}.subject")
    _validate_annotations(idx.get("annotations"), f"{what}.annotations")
    return idx


def validate_config(doc: Any, what: str = "config") -> dict[str, Any]:
    """Check an image configuration (config.md)."""
    c = _require_object(doc, what)
    for key in ("architecture", "os"):
        if not isinstance(c.get(key), str) or not c[key]:
            raise _fail(f"{what}.{key}", "is required and must be a non-empty string")
    rootfs = c.get("rootfs")
    if not isinstance(rootfs, dict):
        raise _fail(f"{what}.rootfs", "is required and must be an object")
    # config.md: rootfs.type "MUST be set to layers. Implementations MUST generate
    # an error if they encounter a unknown value while verifying or unpacking an image."
    if rootfs.get("type") != "layers":
        raise _fail(f"{what}.rootfs.type", f"must be 'layers', not {rootfs.get('type')!r}")
    diff_ids = rootfs.get("diff_ids")
    if not isinstance(diff_ids, list):
        raise _fail(f"{what}.rootfs.diff_ids", "is required and must be an array")
    for i, d in enumerate(diff_ids):
        _digest.parse(d, f"{what}.rootfs.diff_ids[{i}]")
    for key in ("created", "author", "variant", "os.version"):
        if key in c and c[key] is not None and not isinstance(c[key], str):
            raise _fail(f"{what}.{key}", "must be a string")
    cfg = c.get("config")
    if cfg is not None:
        cfg = _require_object(cfg, f"{what}.config")
        for key in ("Env", "Entrypoint", "Cmd"):
            _validate_string_list(cfg.get(key), f"{what}.config.{key}")
        for key in ("User", "WorkingDir", "StopSignal"):
            if cfg.get(key) is not None and not isinstance(cfg[key], str):
                raise _fail(f"{what}.config.{key}", "must be a string")
        for key in ("ExposedPorts", "Volumes"):
            if cfg.get(key) is not None and not isinstance(cfg[key], dict):
                raise _fail(f"{what}.config.{key}", "must be an object")
        _validate_annotations(cfg.get("Labels"), f"{what}.config.Labels")
        for i, env in enumerate(cfg.get("Env") or []):
            if "=" not in env:
                raise _fail(f"{what}.config.Env[{i}]", f"{env!r} is not VARNAME=VALUE")
    history = c.get("history")
    if history is not None:
        if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
            raise _fail(f"{what}.history", "must be an array of objects")
        non_empty = sum(1 for h in history if not h.get("empty_layer"))
        if history and non_empty != len(diff_ids):
            raise _fail(f"{what}.history",
                        f"has {non_empty} non-empty entries but rootfs has {len(diff_ids)} layers")
    return c


def validate_layout_file(doc: Any) -> dict[str, Any]:
    """Check the content of an `oci-layout` file (image-layout.md)."""
    d = _require_object(doc, "oci-layout")
    # image-layout.md: "It MUST contain an imageLayoutVersion field"
    if not isinstance(d.get("imageLayoutVersion"), str):
        raise _fail("oci-layout.imageLayoutVersion", "is required")
    return d


def host_platform() -> dict[str, str]:
    """The platform of this machine in OCI terms (GOOS/GOARCH names)."""
    import os
    import platform

    machine = platform.machine()
    arch, variant = {
        "x86_64": ("amd64", ""),
        "aarch64": ("arm64", "v8"),
        "armv7l": ("arm", "v7"),
        "armv6l": ("arm", "v6"),
        "i686": ("386", ""),
        "i386": ("386", ""),
        "ppc64le": ("ppc64le", ""),
        "s390x": ("s390x", ""),
        "riscv64": ("riscv64", ""),
    }.get(machine, (machine, ""))
    p = {"os": os.uname().sysname.lower(), "architecture": arch}
    if variant:
        p["variant"] = variant
    return p


def parse_platform(text: str) -> dict[str, str]:
    """'linux/arm64/v8' -> {'os': 'linux', 'architecture': 'arm64', 'variant': 'v8'}."""
    parts = text.split("/")
    if len(parts) < 2 or len(parts) > 3 or not all(parts):
        raise ImageError(f"platform {text!r}: expected OS/ARCH[/VARIANT]")
    p = {"os": parts[0], "architecture": parts[1]}
    if len(parts) == 3:
        p["variant"] = parts[2]
    return p


def platform_matches(want: dict[str, str], have: dict[str, Any] | None) -> bool:
    if not have:
        return False
    if have.get("os") != want.get("os") or have.get("architecture") != want.get("architecture"):
        return False
    wv, hv = want.get("variant"), have.get("variant")
    if wv and hv and wv != hv:
        # arm64 images often omit "v8"; accept a missing variant on either side
        return False
    return True


def format_platform(p: dict[str, Any]) -> str:
    s = f"{p.get('os')}/{p.get('architecture')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")
