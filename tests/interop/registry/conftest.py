"""Fixtures for the registry interop tests: a real docker-registry on 127.0.0.1.

``registry`` starts Debian's ``docker-registry`` (distribution 2.8) on a free
port with filesystem storage in a temp dir and deletion enabled;
``basic_registry`` puts it behind htpasswd basic auth, ``token_registry``
behind bearer auth with our own token server.  Every server is stopped and its
files removed at the end of the test, also on failure.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_registry_support import Registry, TokenServer, htpasswd_line, make_layout


@pytest.fixture
def workdir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="ocipy-regtest-"))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start_registry(workdir: Path) -> Iterator[Callable[..., Registry]]:
    started: list[Registry] = []

    def start(auth: dict[str, Any] | None = None) -> Registry:
        r = Registry(workdir / f"registry{len(started)}", auth)
        started.append(r)
        return r

    try:
        yield start
    finally:
        for r in started:
            r.stop()


@pytest.fixture
def registry(start_registry: Callable[..., Registry]) -> Registry:
    return start_registry()


@pytest.fixture
def basic_registry(start_registry: Callable[..., Registry], workdir: Path) -> Registry:
    pw = workdir / "htpasswd"
    pw.write_text(htpasswd_line("alice", "s3cret") + "\n")
    return start_registry({"htpasswd": {"realm": "test", "path": str(pw)}})


@pytest.fixture
def oci_image(workdir: Path) -> Path:
    return make_layout(workdir / "src-layout")


@pytest.fixture
def token_registry(start_registry: Callable[..., Registry], workdir: Path) -> Iterator[tuple[Registry, TokenServer]]:
    ts = TokenServer(workdir / "token", {"alice": "s3cret"}, anonymous_actions=("pull",))
    try:
        yield start_registry(ts.registry_auth()), ts
    finally:
        ts.stop()
