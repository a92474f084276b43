"""Write docs/api-reference.md from the public API's docstrings and signatures.

    .venv/bin/python scripts/api_reference.py          # rewrite the page
    .venv/bin/python scripts/api_reference.py --check  # exit 1 if it is stale

The page lists, for each public module, every name of its ``__all__`` (and the
public methods of the classes among them) with its signature and docstring, in
that order.  tests/unit/test_api_reference.py runs ``--check``, so the page
cannot drift from the code.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PAGE = REPO / "docs" / "api-reference.md"
MODULES = ("ocipy.api", "ocipy.api_image", "ocipy.api_registry", "ocipy.aio", "ocipy.errors")
HEADER = """# API reference (`ocipy.api`, `ocipy.api_image`, `ocipy.api_registry`, `ocipy.aio`, `ocipy.errors`)

Generated from the docstrings by `scripts/api_reference.py` (a test fails when
this page and the code disagree). The tutorial is [api.md](api.md).
"""


def _signature(obj: object) -> str:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""


def _doc(obj: object) -> str:
    return inspect.getdoc(obj) or ""


def _members(cls: type) -> list[tuple[str, object]]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_"):
            continue  # __enter__/__exit__ and the like: the class's docstring says what `with` does
        if isinstance(value, staticmethod | classmethod):
            value = value.__func__
        if callable(value) or isinstance(value, property):
            out.append((name, value))
    return out


def render() -> str:
    import importlib

    parts = [HEADER]
    for modname in MODULES:
        module = importlib.import_module(modname)
        parts.append(f"\n## `{modname}`\n\n{_doc(module).splitlines()[0]}\n")
        for name in sorted(getattr(module, "__all__", [])):
            obj = getattr(module, name)
            if inspect.isclass(obj):
                bases = ", ".join(b.__name__ for b in obj.__bases__ if b is not object)
                parts.append(f"\n### class `{modname}.{name}`" + (f"({bases})" if bases else "") + "\n")
                parts.append(f"\n{_doc(obj)}\n")
                for mname, member in _members(obj):
                    if isinstance(member, property):
                        first = (_doc(member).splitlines() or [""])[0]
                        parts.append(f"\n- property `{mname}`" + (f": {first}" if first else "") + "\n")
                    else:
                        parts.append(f"\n#### `{name}.{mname}{_signature(member)}`\n\n{_doc(member)}\n")
            elif inspect.isroutine(obj):
                parts.append(f"\n### `{modname}.{name}{_signature(obj)}`\n\n{_doc(obj)}\n")
            else:
                parts.append(f"\n### `{modname}.{name}`\n\n`{obj!r}`\n")
    return "".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        current = PAGE.read_text() if PAGE.exists() else ""
        if current != text:
            print(f"{PAGE.relative_to(REPO)} is stale: run scripts/api_reference.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
