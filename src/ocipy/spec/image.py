"""OCI image-spec documents, in one place: the media-type table (OCI and
Docker schema2, with each layer type's compression), reading a document
(:func:`load_json`: size and nesting bounded), validation of descriptors,
manifests, indexes, image configs and the oci-layout file, and the platform
rule (:func:`choose_platform`) every command uses to pick an image from an
index.

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
# schema 1 is recognised only to be refused by name
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"

MANIFEST_TYPES = (MEDIA_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (MEDIA_INDEX, DOCKER_MANIFEST_LIST)
CONFIG_TYPES = (MEDIA_CONFIG, DOCKER_CONFIG)
# what a registry client asks for (indexes first: the platform is chosen here)
MANIFEST_ACCEPT = (MEDIA_INDEX, MEDIA_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)

# The media-type table.  Layers: media type -> (family, compression, distributable).
LAYER_TYPES: dict[str, tuple[str, str, bool]] = {
    MEDIA_LAYER: ("oci", "none", True),
    MEDIA_LAYER_GZIP: ("oci", "gzip", True),
    MEDIA_LAYER_ZSTD: ("oci", "zstd", True),
    MEDIA_LAYER_ND: ("oci", "none", False),
    MEDIA_LAYER_ND_GZIP: ("oci", "gzip", False),
    MEDIA_LAYER_ND_ZSTD: ("oci", "zstd", False),
    DOCKER_LAYER: ("docker", "none", True),
    DOCKER_LAYER_GZIP: ("docker", "gzip", True),
    DOCKER_LAYER_FOREIGN: ("docker", "gzip", False),
}
# layer media type -> compression ("none", "gzip", "zstd")
LAYER_COMPRESSION: dict[str, str] = {mt: row[1] for mt, row in LAYER_TYPES.items()}
COMPRESSED_LAYER_TYPE = {"none": MEDIA_LAYER, "gzip": MEDIA_LAYER_GZIP, "zstd": MEDIA_LAYER_ZSTD}
# Docker schema2 type -> its OCI equivalent (peers read only OCI manifests from a layout)
DOCKER_TO_OCI: dict[str, str] = {
    DOCKER_MANIFEST: MEDIA_MANIFEST,
    DOCKER_MANIFEST_LIST: MEDIA_INDEX,
    DOCKER_CONFIG: MEDIA_CONFIG,
    DOCKER_LAYER: MEDIA_LAYER,
    DOCKER_LAYER_GZIP: MEDIA_LAYER_GZIP,
    DOCKER_LAYER_FOREIGN: MEDIA_LAYER_ND_GZIP,
}
# manifests, indexes and configs larger than this are refused (containers/image's
# limit, and the distribution-spec's "at least 4 MB" a registry must accept)
MAX_DOCUMENT_SIZE = 4 << 20


def layer_with_compression(media_type: str, compression: str) -> str:
    """The media type of `media_type`'s layer family with another compression."""
    family, _, distributable = LAYER_TYPES[media_type]
    if family == "docker" and compression in ("none", "gzip") and distributable:
        return DOCKER_LAYER if compression == "none" else DOCKER_LAYER_GZIP
    base = MEDIA_LAYER if distributable else MEDIA_LAYER_ND
    return base if compression == "none" else f"{base}+{compression}"


def load_json(data: bytes | str, what: str) -> Any:
    """Parse a document: an error naming `what` for invalid JSON, or nesting deeper
    than :data:`ocipy.jsonfast.MAX_DEPTH` (as runc's "exceeded max depth"), never
    a RecursionError."""
    from ocipy import jsonfast

    try:
        return jsonfast.loads(data)
    except jsonfast.TooDeep as e:
        raise ImageError(f"{what}: invalid JSON: exceeded max depth ({e})") from None
    except ValueError as e:
        raise ImageError(f"{what}: invalid JSON: {e}") from None

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


def parse_document(data: bytes, desc: dict[str, Any], what: str | None = None) -> dict[str, Any]:
    """The manifest or index (or config) `desc` names, from its verified bytes:
    parsed (bounded, :func:`load_json`) and validated by the descriptor's media
    type, whose document must not claim another one (no manifest/index confusion).
    Every reader of documents -- layouts, archives, registries -- goes through here."""
    mt = desc.get("mediaType")
    if mt in CONFIG_TYPES:
        where = what or f"config {desc.get('digest')}"
        return validate_config(load_json(data, where), where)
    where = what or f"manifest {desc.get('digest')}"
    if mt not in MANIFEST_TYPES + INDEX_TYPES:
        raise ImageError(f"{where}: unknown media type {mt!r}")
    doc = load_json(data, where)
    if mt in INDEX_TYPES:
        validate_index(doc, where)
    else:
        validate_manifest(doc, where)
    if doc.get("mediaType") not in (None, mt):
        raise ImageError(f"{where}: mediaType {doc.get('mediaType')!r} does not match the descriptor's {mt!r}")
    return doc  # type: ignore[no-any-return]


_GENERIC_TYPES = ("application/json", "text/plain")


def manifest_media_type(doc: Any, declared: str | None, what: str,
                        error: type[Exception] = ImageError) -> str:
    """A manifest's media type: its ``mediaType`` field, which must agree with
    `declared` (a descriptor's type, or a registry's Content-Type; generic JSON
    types say nothing), else `declared`, else the document's shape.  Docker
    schema 1 is refused by name.  `error` is the class raised (the caller's side)."""
    if not isinstance(doc, dict):
        raise error(f"{what}: manifest is not a JSON object")
    if declared in _GENERIC_TYPES:
        declared = None
    field = doc.get("mediaType")
    if isinstance(field, str) and field:
        if declared and declared != field:
            raise error(f"{what}: Content-Type/descriptor {declared!r} differs from the manifest's mediaType {field!r}")
        return field
    if declared in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED) or doc.get("schemaVersion") == 1:
        raise error(f"{what}: Docker schema 1 manifests are not supported")
    if declared:
        return declared
    return MEDIA_INDEX if "manifests" in doc else MEDIA_MANIFEST


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


def normalize_platform(p: dict[str, Any]) -> dict[str, Any]:
    """containerd's normalisation: arm64's default variant is v8, amd64 has none."""
    out = dict(p)
    arch, variant = out.get("architecture"), out.get("variant") or ""
    if arch == "arm64" and variant in ("", "v8"):
        out["variant"] = "v8"
    elif arch == "amd64" and variant == "v1":
        out.pop("variant", None)
    if not out.get("variant"):
        out.pop("variant", None)
    return out


def _platform_rank(want: dict[str, Any], have: Any) -> int | None:
    """How well index entry platform `have` fits `want`: 0 exact, 1 acceptable, None not.

    image-index.md's platform fields: ``os`` and ``architecture`` must match;
    ``variant`` must match when both name one (a missing one on either side is
    acceptable, ranked after an exact match); ``os.version`` likewise;
    ``os.features`` lists features the image *requires*, so every one must be
    among the wanted features.
    """
    if not isinstance(have, dict):
        return None
    w, h = normalize_platform(want), normalize_platform(have)
    if h.get("os") != w.get("os") or h.get("architecture") != w.get("architecture"):
        return None
    rank = 0
    for key in ("variant", "os.version"):
        wv, hv = w.get(key), h.get(key)
        if wv and hv and wv != hv:
            return None
        if bool(wv) != bool(hv):
            rank = 1
    required = h.get("os.features") or []
    if not isinstance(required, list) or not set(required) <= set(w.get("os.features") or []):
        return None
    return rank


def platform_matches(want: dict[str, Any], have: dict[str, Any] | None) -> bool:
    return _platform_rank(want, have) is not None


def choose_platform(entries: list[dict[str, Any]], want: dict[str, Any] | None,
                    what: str) -> dict[str, Any]:
    """The platform rule: the index entry (a manifest or a nested index) for `want`
    (default: this host's).  The best-ranked match wins, the first of equals
    (image-index.md: "If multiple manifests match a client or runtime's
    requirements, the first matching entry SHOULD be used").  An index whose one
    entry names no platform gives that entry.  ImageError naming the index if none fits.
    """
    want = want or host_platform()
    candidates = [d for d in entries if isinstance(d, dict) and d.get("mediaType") in MANIFEST_TYPES + INDEX_TYPES]
    best: tuple[int, dict[str, Any]] | None = None
    for d in candidates:
        rank = _platform_rank(want, d.get("platform"))
        if rank is not None and (best is None or rank < best[0]):
            best = (rank, d)
    if best is not None:
        return best[1]
    if len(candidates) == 1 and "platform" not in candidates[0]:
        return candidates[0]
    have = ", ".join(sorted({format_platform(d["platform"]) for d in candidates if isinstance(d.get("platform"), dict)}))
    raise ImageError(f"{what}: no image for platform {format_platform(want)}" + (f" (has {have})" if have else ""))


def format_platform(p: dict[str, Any]) -> str:
    s = f"{p.get('os')}/{p.get('architecture')}"
    return s + (f"/{p['variant']}" if p.get("variant") else "")


def chain_ids(diff_ids: list[str]) -> list[str]:
    """The ChainID of every layer stack of an image, bottom first (config.md "Layer ChainID")::

        ChainID(L0) = DiffID(L0)
        ChainID(L0|...|Ln) = Digest(ChainID(L0|...|Ln-1) + " " + DiffID(Ln))

    Digest is sha256 of the UTF-8 string, as the spec's examples and every
    engine (containerd, podman) compute it.
    """
    import hashlib

    out: list[str] = []
    for i, diff_id in enumerate(diff_ids):
        _digest.parse(diff_id, f"rootfs.diff_ids[{i}]")
        if not out:
            out.append(diff_id)
        else:
            out.append("sha256:" + hashlib.sha256(f"{out[-1]} {diff_id}".encode()).hexdigest())
    return out


def layer_diff_ids(manifest: dict[str, Any], config: dict[str, Any]) -> list[str]:
    """config rootfs.diff_ids, one per manifest layer (an ImageError otherwise)."""
    diff_ids: list[str] = config["rootfs"]["diff_ids"]
    if len(manifest["layers"]) != len(diff_ids):
        raise ImageError(f"config: rootfs.diff_ids has {len(diff_ids)} entries but the manifest "
                         f"has {len(manifest['layers'])} layers")
    return diff_ids
