"""Small helpers shared by the tests (import as `from support.helpers import ...`)."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ocipy.spec.config import Config, parse

REPO = Path(__file__).resolve().parent.parent.parent
OCIPY = str(REPO / ".venv" / "bin" / "ocipy")
IS_ROOT = os.geteuid() == 0

needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root: creates namespaces and mounts")


def unique_id(prefix: str = "t") -> str:
    """A container id no other test (or test run) uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def parsed_config(partial: dict) -> Config:
    """A config.json fragment (no ociVersion or root needed) through the one parse, as create reads it."""
    return parse({"ociVersion": "1.0.2", "root": {"path": "rootfs"}, **partial})
