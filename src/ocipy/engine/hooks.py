"""OCI hooks the engine adds to a container's config: calls into ocipy itself.

The runtime runs them at the points runtime.md gives (createRuntime after
the namespaces exist, poststop at delete), also when the engine that made
the container is long gone: that is how `ocipy delete` of a container that
`ocipy image run -d` made stops its network (the store's directory goes by
a shell hook, :func:`ocipy.storage.containers.removal_hook`).
"""

from __future__ import annotations

import os
import sys
from typing import Any


def python_hook(imports: str, call: str, timeout: int = 30) -> dict[str, Any]:
    """A hook running `call` after `imports` in this interpreter, isolated (-IS)."""
    package_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    code = f"import sys; sys.path[:0] = [{package_parent!r}]\n{imports}\n{call}"
    return {"path": sys.executable, "args": [sys.executable, "-IS", "-c", code], "timeout": timeout}
