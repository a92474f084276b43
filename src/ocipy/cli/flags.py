"""A small flag parser for the runtime's hot commands (argparse and the `re` it
pulls in cost ~10 ms of start-up, paid by every container operation).

Accepts runc's spellings: `--flag value`, `--flag=value`, `-f value`, Go's
single-dash long form `-flag`, boolean `--flag=true|false`, and `--` to end
the flags.
"""

from __future__ import annotations

import sys

from ocipy.errors import OcipyError

TYPE_CHECKING = False  # typing itself costs ~3 ms of start-up
if TYPE_CHECKING:
    from typing import Any


# kinds: "bool", "str", "int", "list"
Spec = dict[str, tuple[str, str]]


class HelpShown(Exception):
    pass


class UsageError(OcipyError):
    """A flag or argument the command does not accept (exit 1 for every command, as runc's)."""


def parse(command: str, argv: list[str], spec: Spec, usage: str, *, stop_at_positional: bool = False,
          min_args: int = 0, max_args: int | None = None) -> tuple[dict[str, Any], list[str]]:  # fmt: skip
    """Return (values by dest, positional args); raise OcipyError naming a bad flag."""
    values: dict[str, Any] = {}
    for dest, kind in spec.values():
        values.setdefault(dest, False if kind == "bool" else [] if kind == "list" else None)
    positional: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            positional.extend(argv[i:])
            break
        if arg in ("-h", "--help", "-help"):
            from ocipy.cli import help

            if help.page(command) is not None:
                help.show(command)
            else:
                sys.stdout.write(f"usage: ocipy {command} {usage}\n")
            raise HelpShown
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            if stop_at_positional and len(positional) >= min_args:
                positional.extend(argv[i:])
                break
            continue
        name, eq, value = arg.partition("=")
        if name not in spec and not name.startswith("--") and len(name) > 2:
            name = "-" + name  # Go's -flag spelling
        if name not in spec:
            raise UsageError(f"{command}: unknown flag {arg!r} (usage: ocipy {command} {usage})")
        dest, kind = spec[name]
        if kind == "bool":
            values[dest] = value.lower() not in ("false", "0", "no") if eq else True
            continue
        if not eq:
            if i >= len(argv):
                raise UsageError(f"{command}: flag {name} needs a value")
            value = argv[i]
            i += 1
        if kind == "int":
            try:
                values[dest] = int(value)
            except ValueError:
                raise UsageError(f"{command}: flag {name}: {value!r} is not a number") from None
        elif kind == "list":
            values[dest].append(value)
        else:
            values[dest] = value
    if len(positional) < min_args or (max_args is not None and len(positional) > max_args):
        raise UsageError(f"{command}: wrong number of arguments (usage: ocipy {command} {usage})")
    return values, positional
