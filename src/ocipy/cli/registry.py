"""``ocipy image copy|inspect|tags|delete`` with skopeo's flags, for every transport.

``ocipy copy|inspect|tags`` are the same commands (aliases: one parser, one
output).  ``ocipy delete`` is runc's verb and never reaches here.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ocipy.errors import OcipyError

_BOOL_FLAGS = ("tls-verify", "src-tls-verify", "dest-tls-verify", "all", "raw", "config",
               "no-tags", "quiet", "debug")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # argparse exits; we raise so the dispatcher prints one line
        raise OcipyError(f"{self.prog}: {message}")


def _bool(value: str, flag: str) -> bool:
    v = value.lower()
    if v in ("true", "1", "yes", "t"):
        return True
    if v in ("false", "0", "no", "f"):
        return False
    raise OcipyError(f"--{flag}: {value!r} is not true or false")


def _normalize(argv: list[str]) -> list[str]:
    """Go-style flags: ``--flag`` alone is ``--flag=true``; ``--dest-compress [FMT]``."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.lstrip("-")
        if arg == "--":
            out.extend(argv[i:])
            break
        if arg.startswith("-") and name in _BOOL_FLAGS and "=" not in arg:
            out.append(f"--{name}=true")
        elif arg == "--dest-compress":
            if i + 1 < len(argv) and argv[i + 1] in ("gzip", "zstd"):
                out.append(f"--dest-compress={argv[i + 1]}")
                i += 1
            else:
                out.append("--dest-compress=gzip")
        elif arg in ("-a",):
            out.append("--all=true")
        elif arg in ("-q",):
            out.append("--quiet=true")
        elif arg in ("-n",):
            out.append("--no-tags=true")
        else:
            out.append(arg)
        i += 1
    return out


def _common(p: argparse.ArgumentParser, prefixes: tuple[str, ...] = ("",)) -> None:
    p.add_argument("--retry-times", type=int, default=3, metavar="N",
                   help="retries of a transient failure (default 3)")
    for pre in prefixes:
        p.add_argument(f"--{pre}creds", metavar="USER[:PASS]", help="registry credentials")
        p.add_argument(f"--{pre}authfile", metavar="FILE", help="auth file (containers auth.json / docker config.json)")
        p.add_argument(f"--{pre}tls-verify", metavar="BOOL", help="require HTTPS with a valid certificate (default true)")
    if prefixes != ("",):
        p.add_argument("--creds", metavar="USER[:PASS]", help="credentials for both sides")
        p.add_argument("--authfile", metavar="FILE", help="auth file for both sides")
        p.add_argument("--tls-verify", metavar="BOOL", help="--src-tls-verify and --dest-tls-verify")


def _options(ns: argparse.Namespace, prefix: str) -> Any:
    from ocipy.registry.endpoints import RegistryOptions

    attr = prefix.replace("-", "_")
    creds = getattr(ns, f"{attr}creds", None) or getattr(ns, "creds", None)
    authfile = getattr(ns, f"{attr}authfile", None) or getattr(ns, "authfile", None)
    tls = getattr(ns, f"{attr}tls_verify", None)
    if tls is None:
        tls = getattr(ns, "tls_verify", None)
    if ns.retry_times < 0:
        raise OcipyError("--retry-times: must not be negative")
    return RegistryOptions(creds=creds, authfile=authfile,
                           tls_verify=True if tls is None else _bool(tls, f"{prefix}tls-verify"),
                           retry_times=ns.retry_times, chunk_size=getattr(ns, "chunk_size", None))


def run_copy(argv: list[str], opts: Any, prog: str = "ocipy copy") -> int:
    from ocipy import api_registry

    p = _Parser(prog=prog, description="Copy an image between docker://, oci:, oci-archive:, docker-archive:")
    p.add_argument("source")
    p.add_argument("destination")
    p.add_argument("--all", default="false", metavar="BOOL", help="copy every image of an index")
    p.add_argument("--multi-arch", choices=("system", "all"), help="skopeo's spelling: all is --all")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]", help="the image to pick from an index")
    p.add_argument("--override-os", metavar="OS")
    p.add_argument("--override-arch", metavar="ARCH")
    p.add_argument("--override-variant", metavar="VARIANT")
    p.add_argument("--dest-compress", choices=("gzip", "zstd"), help="recompress layers (gzip or zstd)")
    p.add_argument("--dest-compress-format", choices=("gzip", "zstd"), help="same as --dest-compress FORMAT")
    p.add_argument("--digestfile", metavar="FILE", help="write the digest of the copied manifest here")
    p.add_argument("--quiet", "-q", default="false", metavar="BOOL",
                   help="no progress output (default: bars on a terminal, else a line per blob)")
    p.add_argument("--chunk-size", type=int, metavar="BYTES", help="upload blobs in PATCH chunks of this size")
    _common(p, ("src-", "dest-"))
    ns = p.parse_args(_normalize(argv))
    platform = ns.platform
    if ns.override_arch or ns.override_os or ns.override_variant:
        from ocipy.spec.image import host_platform

        host = host_platform()
        plat = {"os": ns.override_os or host["os"], "architecture": ns.override_arch or host["architecture"]}
        if ns.override_variant:
            plat["variant"] = ns.override_variant
        platform = plat
    quiet = _bool(ns.quiet, "quiet")
    compress = ns.dest_compress_format or ns.dest_compress
    from ocipy.content.progress import reporter

    # bars on a terminal, a line per blob otherwise; on stdout, as skopeo copy reports
    # (stderr stays for the one-line error)
    with reporter("quiet" if quiet else "auto", sys.stdout) as progress:
        digest = api_registry.copy(
            ns.source, ns.destination,
            all_platforms=_bool(ns.all, "all") or ns.multi_arch == "all",
            platform=platform, dest_compress=compress,
            src_options=_options(ns, "src-"), dest_options=_options(ns, "dest-"),
            progress=progress)
    if ns.digestfile:
        with open(ns.digestfile, "w") as f:
            f.write(digest)
    return 0


def run_inspect(argv: list[str], opts: Any, prog: str = "ocipy inspect") -> int:
    import json

    from ocipy import api_registry

    p = _Parser(prog=prog, description="Show an image's manifest and config (any transport)")
    p.add_argument("image")
    p.add_argument("--raw", default="false", metavar="BOOL", help="print the manifest (or config) as stored")
    p.add_argument("--config", default="false", metavar="BOOL", help="show the image config")
    p.add_argument("--no-tags", default="false", metavar="BOOL", help="do not list the repository's tags")
    p.add_argument("--platform", metavar="OS/ARCH[/VARIANT]")
    _common(p)
    ns = p.parse_args(_normalize(argv))
    options = _options(ns, "")
    raw, config = _bool(ns.raw, "raw"), _bool(ns.config, "config")
    out = sys.stdout
    if raw:
        data = api_registry.inspect_raw(ns.image, config=config, options=options, platform=ns.platform)
        out.buffer.write(data)
        out.flush()
        return 0
    if config:
        data = api_registry.inspect_raw(ns.image, config=True, options=options, platform=ns.platform)
        from ocipy.spec.image import load_json

        out.write(json.dumps(load_json(data, f"{ns.image}: config"), indent=4) + "\n")
        return 0
    info = api_registry.inspect(ns.image, options=options, platform=ns.platform,
                                list_tags=not _bool(ns.no_tags, "no-tags"))
    out.write(json.dumps(info, indent=4) + "\n")
    return 0


def run_tags(argv: list[str], opts: Any, prog: str = "ocipy tags") -> int:
    import json

    from ocipy import api_registry

    p = _Parser(prog=prog, description="List the tags of a repository (docker://), layout (oci:) or archive")
    p.add_argument("repository")
    _common(p)
    ns = p.parse_args(_normalize(argv))
    repo = ns.repository
    tag_list = api_registry.tags(repo, options=_options(ns, ""))
    name = repo[len("docker://"):] if repo.startswith("docker://") else repo  # skopeo's "Repository"
    sys.stdout.write(json.dumps({"Repository": name, "Tags": tag_list}, indent=4) + "\n")
    return 0


def run_delete(argv: list[str], opts: Any, prog: str = "ocipy image delete") -> int:
    from ocipy import api_registry

    p = _Parser(prog=prog, description="Delete an image: a registry's manifest (docker://) or a layout's tag (oci:DIR:TAG)")
    p.add_argument("image")
    _common(p)
    ns = p.parse_args(_normalize(argv))
    api_registry.delete(ns.image, options=_options(ns, ""))
    return 0
