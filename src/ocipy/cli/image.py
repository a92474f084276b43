"""``ocipy image …``: every image and registry command (umoci's and skopeo's).

References (:mod:`ocipy.content.reference`): ``docker://HOST/REPO[:TAG|@DIGEST]``,
``oci:DIR[:TAG|@DIGEST]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]``.
Commands that read an image take any of them; ``copy``, ``inspect``, ``tags``
and ``delete`` take skopeo's flags (``ocipy copy|inspect|tags`` are the same
commands under their skopeo names).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

COMPRESSIONS = ("gzip", "zstd", "none")


class _Unused:
    """A subcommand's parser that is not built: `ocipy image X` builds only X's
    (each ArgumentParser costs start-up time a warm `image run` would feel)."""

    def add_argument(self, *args: Any, **kw: Any) -> None:
        pass


def _parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The parser of `ocipy image`: with `wanted`, only that subcommand's arguments
    (the full parser when `wanted` is no subcommand: its error lists them all)."""
    p = argparse.ArgumentParser(prog="ocipy image", description="Images: layouts, archives, registries and bundles")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    sub.required = True
    matched = []

    def add(name: str, help: str, aliases: tuple[str, ...] = ()) -> Any:
        if wanted is None or wanted == name or wanted in aliases:
            matched.append(name)
            return sub.add_parser(name, aliases=list(aliases), help=help)
        return _Unused()

    s = add("init", help="create an empty image layout")
    s.add_argument("dir")

    s = add("new", help="create an empty image (no layers)")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("--platform", help="OS/ARCH[/VARIANT] (default: this machine's)")

    s = add("ls", "list the store's images, or the tags of a layout DIR", aliases=("images",))
    s.add_argument("dir", nargs="?")
    s.add_argument("--json", action="store_true", help="print descriptors as JSON")
    _storage_flag(s)

    s = add("pull", help="copy an image into the local store and unpack its layers")
    s.add_argument("--platform", help="OS/ARCH[/VARIANT] (default: this machine's)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    s.add_argument("ref", help="any reference; a bare NAME[:TAG] is read from its registry")
    _storage_flag(s)
    _registry_flags(s)

    s = add("prune", help="remove from the store what no image or container uses")
    _storage_flag(s)

    for name, text in _SKOPEO.items():
        if wanted is None:
            sub.add_parser(name, help=text, add_help=False)

    s = add("validate", help="verify every blob, document and layer of an image or layout")
    s.add_argument("ref")
    _registry_flags(s)

    s = add("tag", help="add a tag to an image (a layout's, or a name in the store)")
    s.add_argument("ref", help="oci:DIR:TAG, or a store image")
    s.add_argument("new_tag", help="TAG (layout) or NAME[:TAG] (store)")
    _storage_flag(s)

    s = add("rm", "remove a tag from a layout, or names from the store", aliases=("rmi",))
    s.add_argument("refs", nargs="+", metavar="ref", help="oci:DIR:TAG, or a store image")
    _storage_flag(s)

    s = add("gc", help="remove blobs no tag references")
    s.add_argument("dir")

    s = add("unpack", help="unpack an image into a runtime bundle")
    s.add_argument("--platform")
    s.add_argument("--max-size", help="cap on the expanded size (e.g. 4G); default 32G")
    s.add_argument("-q", "--quiet", action="store_true",
                   help="no progress output (default: bars on a terminal, else a line per layer)")
    s.add_argument("ref")
    s.add_argument("bundle")
    _registry_flags(s)

    s = add("repack", help="make a new image from the changes to an unpacked bundle")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("--history", help="created_by of the new history entry")
    s.add_argument("--no-mask-volumes", action="store_true", help="include Config.Volumes paths")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("bundle")

    s = add("add-layer", help="append a layer made of a directory or a tar file")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("--history", help="created_by of the new history entry")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("path")

    s = add("config", help="change an image's configuration")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("--entrypoint", action="append", help="repeat for each argument")
    s.add_argument("--cmd", action="append", help="repeat for each argument")
    s.add_argument("--env", action="append", help="NAME=VALUE (repeatable)")
    s.add_argument("--workdir")
    s.add_argument("--user")
    s.add_argument("--label", action="append", help="KEY=VALUE (repeatable)")
    s.add_argument("--port", action="append", help="PORT[/PROTO] (repeatable)")
    s.add_argument("--volume", action="append", help="absolute path (repeatable)")
    s.add_argument("--stop-signal")
    s.add_argument("--author")
    s.add_argument("--os")
    s.add_argument("--architecture")
    s.add_argument("--created")
    s.add_argument("--history", help="created_by of the history entry")
    s.add_argument("--no-history", action="store_true")
    s.add_argument("--clear", action="append", default=[],
                   help="cmd|entrypoint|env|label|port|volume|workdir|user|stop-signal|author (repeatable)")

    s = add("import", help="copy an image from any source into a layout")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("source")
    s.add_argument("destination", help="oci:DIR:TAG")
    _registry_flags(s)

    s = add("export", help="write an image as oci-archive:FILE[:TAG], docker-archive:FILE[:NAME:TAG] or oci:DIR:TAG")
    s.add_argument("--platform")
    s.add_argument("source", help="any image reference")
    s.add_argument("destination")
    _registry_flags(s)

    s = add("run", help="run an image from the store, pulled first if missing (podman run's options)")
    s.add_argument("--rm", action="store_true", help="delete the container and its directory afterwards")
    s.add_argument("--pull", default="missing", choices=("missing", "always", "never", "newer"),
                   help="when to pull the image into the store (default missing)")
    s.add_argument("-q", "--quiet", action="store_true", help="no pull progress output")
    _storage_flag(s)
    s.add_argument("-d", "--detach", action="store_true", help="return once it runs (`ocipy delete` it later)")
    s.add_argument("--name", help="container id")
    s.add_argument("--platform")
    s.add_argument("-t", "--tty", action="store_true", help="give the program a terminal")
    s.add_argument("-i", "--interactive", action="store_true", help="keep stdin (else /dev/null)")
    s.add_argument("-e", "--env", action="append", default=[], metavar="NAME[=VALUE]")
    s.add_argument("--env-file", action="append", default=[], metavar="FILE")
    s.add_argument("-v", "--volume", action="append", default=[], metavar="SRC:DST[:ro]")
    s.add_argument("-w", "--workdir")
    s.add_argument("-u", "--user", metavar="USER[:GROUP]")
    s.add_argument("--entrypoint", help="replaces the image's Entrypoint (and drops its Cmd)")
    s.add_argument("--network", "--net", default="private", choices=("private", "host", "none"),
                   help="private (default: slirp4netns), host, or none (loopback only)")
    s.add_argument("-p", "--publish", action="append", default=[], metavar="[IP:]HOSTPORT:PORT[/PROTO]")
    s.add_argument("-m", "--memory", metavar="SIZE")
    s.add_argument("--cpus")
    s.add_argument("--pids-limit")
    s.add_argument("--cap-add", action="append", default=[])
    s.add_argument("--cap-drop", action="append", default=[])
    s.add_argument("--read-only", action="store_true", help="read-only root, with tmpfs on /tmp, /var/tmp, /run")
    s.add_argument("--hostname")
    _registry_flags(s)
    s.add_argument("ref")
    s.add_argument("command", nargs=argparse.REMAINDER)
    if wanted is not None and not matched:
        return _parser(None)
    return p


# skopeo's verbs: their own parsers (Go-style flags), shared with `ocipy copy|inspect|tags`
_SKOPEO = {
    "copy": "copy an image between any two of docker://, oci:, oci-archive:, docker-archive:",
    "inspect": "show an image's manifest and config (--raw, --config)",
    "tags": "list the tags of a repository, layout or archive",
    "delete": "delete an image: a registry manifest, or a layout's tag",
}


def _registry_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--creds", metavar="USER[:PASS]", help="registry credentials (docker:// sources)")
    p.add_argument("--authfile", metavar="FILE", help="auth file (containers auth.json / docker config.json)")
    p.add_argument("--tls-verify", metavar="BOOL", help="require HTTPS with a valid certificate (default true)")
    p.add_argument("--retry-times", type=int, default=3, metavar="N", help="retries of a transient failure")


def _storage_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--storage", metavar="DIR",
                   help="the image store (default $OCIPY_STORAGE, else /var/lib/ocipy/storage for root)")


def _reporters(args: argparse.Namespace, *, skipped: bool = True) -> tuple[Any, Any]:
    """A pull's two progress displays (download, unpack) as the terminal allows
    (ocipy.content.progress); None with -q."""
    if args.quiet:
        return None, None
    from ocipy.content.progress import reporter

    unpacking = "tty" if sys.stderr.isatty() else "quiet"  # lines for what came over the wire only
    return (reporter("auto", verb="Pulled", skipped=skipped),
            reporter(unpacking, verb="Unpacked", noun="layer", skipped=skipped))


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def _options(args: argparse.Namespace) -> Any:
    """RegistryOptions from the flags; None (the defaults) when none was given,
    so that a command that may not reach a registry (a warm `image run`)
    does not load the registry client."""
    if (args.creds, args.authfile, args.tls_verify, args.retry_times) == (None, None, None, 3):
        return None
    from ocipy.cli.registry import _options as options

    return options(args, "")


_VALUED = {"--entrypoint", "--cmd", "--env", "--label", "--workdir", "--user", "--history", "--author",
           "--stop-signal", "--volume", "--port", "--clear"}


def _glue_values(argv: list[str]) -> list[str]:
    """`--cmd -c` -> `--cmd=-c`: list values may start with '-' (as with umoci)."""
    if not argv or argv[0] != "config":
        return argv
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in _VALUED and i + 1 < len(argv):
            out.append(f"{a}={argv[i + 1]}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


def _dump(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")


def run_image(argv: list[str], opts: Any) -> int:
    """Dispatch ``ocipy image COMMAND …`` (called by ocipy.cli.main)."""
    from ocipy import api_image as img

    if argv and argv[0] in _SKOPEO:
        from ocipy.cli import registry

        return int(getattr(registry, "run_" + argv[0])(argv[1:], opts, prog=f"ocipy image {argv[0]}"))
    args = _parser(argv[0] if argv and not argv[0].startswith("-") else None).parse_args(_glue_values(argv))
    cmd = args.subcommand
    if cmd == "init":
        img.init(args.dir)
    elif cmd == "new":
        img.new(args.ref, args.platform)
    elif cmd in ("ls", "images") and args.dir is None:
        images = img.images(storage=args.storage)
        if args.json:
            _dump(images)
        else:
            sys.stdout.write(f"{'NAME':<50} {'DIGEST':<19} {'SIZE':>9}  CREATED\n")
            for i in images:
                sys.stdout.write(f"{i['name']:<50} {i['digest'][7:19]:<19} {_size(i['size']):>9}  "
                                 f"{i['created'] or '-'}\n")
    elif cmd in ("ls", "images"):
        tags = img.list_tags(args.dir)
        if args.json:
            _dump(tags)
        else:
            for t in tags:
                sys.stdout.write(t["tag"] + "\n")
    elif cmd == "pull":
        progress, unpacking = _reporters(args)
        try:
            pulled = img.pull(args.ref, storage=args.storage, progress=progress, platform=args.platform,
                              options=_options(args), unpack_progress=unpacking)
        finally:
            for display in (progress, unpacking):
                if display is not None:
                    display.close()
        sys.stdout.write(pulled["digest"] + "\n")
    elif cmd == "prune":
        for kind, items in img.prune(storage=args.storage).items():
            for item in items:
                sys.stdout.write(f"removed {kind[:-1]} {item}\n")
    elif cmd == "validate":
        checked = img.validate(args.ref, _options(args))
        sys.stdout.write(f"{args.ref}: ok ({len(set(checked))} blobs verified)\n")
    elif cmd == "tag":
        img.tag(args.ref, args.new_tag, storage=args.storage)
    elif cmd in ("rm", "rmi"):
        for ref in args.refs:
            img.remove(ref, storage=args.storage)
    elif cmd == "gc":
        for digest in img.gc(args.dir):
            sys.stdout.write(f"removed {digest}\n")
    elif cmd == "unpack":
        from ocipy.content.progress import reporter
        from ocipy.image.layers.stream import parse_size

        # bars on a terminal only: off one, stderr is for the one-line error (umoci prints nothing)
        with reporter("quiet" if args.quiet or not sys.stderr.isatty() else "tty", verb="Unpacked",
                      noun="layer") as progress:  # fmt: skip
            img.unpack(args.ref, args.bundle, args.platform,
                       parse_size(args.max_size) if args.max_size else None, _options(args), progress)
    elif cmd == "repack":
        img.repack(args.ref, args.bundle, args.compress, args.history, not args.no_mask_volumes)
    elif cmd == "add-layer":
        img.add_layer(args.ref, args.path, args.compress, args.history)
    elif cmd == "config":
        changes = {k: getattr(args, k) for k in (
            "entrypoint", "cmd", "env", "workdir", "user", "label", "port", "volume", "stop_signal",
            "author", "os", "architecture", "created", "clear")}
        img.configure(args.ref, history=args.history, no_history=args.no_history, **changes)
    elif cmd == "import":
        img.import_image(args.source, args.destination, args.compress, _options(args))
    elif cmd == "export":
        img.export(args.source, args.destination, args.platform, _options(args))
    elif cmd == "run":
        from ocipy.engine.options import RunOptions

        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        run_options = RunOptions(
            entrypoint=args.entrypoint, env=args.env, env_files=args.env_file, volumes=args.volume,
            workdir=args.workdir, user=args.user, tty=args.tty, interactive=args.interactive,
            hostname=args.hostname, memory=args.memory, cpus=args.cpus, pids_limit=args.pids_limit,
            cap_add=args.cap_add, cap_drop=args.cap_drop, read_only=args.read_only)  # fmt: skip
        cid = args.name or f"ocipy-{os.urandom(6).hex()}"
        progress, unpacking = _reporters(args, skipped=False)  # a warm run says nothing
        try:
            ran = img.run(args.ref, command or None, rm=args.rm, detach=args.detach, root=opts.root,
                          container_id=cid, platform=args.platform, storage=args.storage, pull=args.pull,
                          options=_options(args), run_options=run_options, network=args.network,
                          ports=args.publish, progress=progress, unpack_progress=unpacking,
                          forward_signals=True)  # fmt: skip
        finally:
            for display in (progress, unpacking):
                if display is not None:
                    display.close()
        if args.detach:
            print(cid)
            return 0
        return int(ran.exit_code)
    return 0
