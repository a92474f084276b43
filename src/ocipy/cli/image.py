"""``ocipy image …``: OCI image layouts, archives and bundles (umoci-like).

References: ``oci:DIR[:TAG]``, ``oci-archive:FILE[:TAG]``, ``docker-archive:FILE[:NAME:TAG]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

COMPRESSIONS = ("gzip", "zstd", "none")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ocipy image", description="OCI image layouts, archives and bundles")
    sub = p.add_subparsers(dest="subcommand", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("init", help="create an empty image layout")
    s.add_argument("dir")

    s = sub.add_parser("new", help="create an empty image (no layers)")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("--platform", help="OS/ARCH[/VARIANT] (default: this machine's)")

    s = sub.add_parser("ls", help="list the tags of a layout")
    s.add_argument("dir")
    s.add_argument("--json", action="store_true", help="print descriptors as JSON")

    s = sub.add_parser("inspect", help="print an image's descriptor, manifest and config as JSON")
    s.add_argument("ref")
    s.add_argument("--platform")

    s = sub.add_parser("validate", help="verify every blob, document and layer of an image or layout")
    s.add_argument("ref")

    s = sub.add_parser("tag", help="add a tag to an image")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("new_tag")

    s = sub.add_parser("rm", help="remove a tag")
    s.add_argument("ref", help="oci:DIR:TAG")

    s = sub.add_parser("gc", help="remove blobs no tag references")
    s.add_argument("dir")

    s = sub.add_parser("unpack", help="unpack an image into a runtime bundle")
    s.add_argument("--platform")
    s.add_argument("--max-size", help="cap on the expanded size (e.g. 4G); default 32G")
    s.add_argument("ref")
    s.add_argument("bundle")

    s = sub.add_parser("repack", help="make a new image from the changes to an unpacked bundle")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("--history", help="created_by of the new history entry")
    s.add_argument("--no-mask-volumes", action="store_true", help="include Config.Volumes paths")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("bundle")

    s = sub.add_parser("add-layer", help="append a layer made of a directory or a tar file")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("--history", help="created_by of the new history entry")
    s.add_argument("ref", help="oci:DIR:TAG")
    s.add_argument("path")

    s = sub.add_parser("config", help="change an image's configuration")
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

    s = sub.add_parser("import", help="copy an oci-archive:/docker-archive: image into a layout")
    s.add_argument("--compress", choices=COMPRESSIONS, default="gzip")
    s.add_argument("source")
    s.add_argument("destination", help="oci:DIR:TAG")

    s = sub.add_parser("export", help="write an image as oci-archive:FILE[:TAG] or docker-archive:FILE[:NAME:TAG]")
    s.add_argument("--platform")
    s.add_argument("source", help="oci:DIR:TAG")
    s.add_argument("destination")

    s = sub.add_parser("run", help="unpack an image into a temp bundle and run it")
    s.add_argument("--rm", action="store_true", help="delete the container and bundle afterwards")
    s.add_argument("--name", help="container id")
    s.add_argument("--platform")
    s.add_argument("ref")
    s.add_argument("command", nargs=argparse.REMAINDER)
    return p


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
    from ocipy.image.layers.stream import parse_size

    args = _parser().parse_args(_glue_values(argv))
    cmd = args.subcommand
    if cmd == "init":
        img.init(args.dir)
    elif cmd == "new":
        img.new(args.ref, args.platform)
    elif cmd == "ls":
        tags = img.list_tags(args.dir)
        if args.json:
            _dump(tags)
        else:
            for t in tags:
                sys.stdout.write(t["tag"] + "\n")
    elif cmd == "inspect":
        _dump(img.inspect(args.ref, args.platform))
    elif cmd == "validate":
        checked = img.validate(args.ref)
        sys.stdout.write(f"{args.ref}: ok ({len(set(checked))} blobs verified)\n")
    elif cmd == "tag":
        img.tag(args.ref, args.new_tag)
    elif cmd == "rm":
        img.remove(args.ref)
    elif cmd == "gc":
        for digest in img.gc(args.dir):
            sys.stdout.write(f"removed {digest}\n")
    elif cmd == "unpack":
        img.unpack(args.ref, args.bundle, args.platform, parse_size(args.max_size) if args.max_size else None)
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
        img.import_image(args.source, args.destination, args.compress)
    elif cmd == "export":
        img.export(args.source, args.destination, args.platform)
    elif cmd == "run":
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return img.run(args.ref, command or None, rm=args.rm, root=opts.root,
                       container_id=args.name, platform=args.platform)
    return 0
