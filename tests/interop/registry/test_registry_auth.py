"""Basic (htpasswd) and bearer-token auth against a real docker-registry."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from test_registry_support import Registry, TokenServer, layout_top, ocipy, skopeo

pytestmark = pytest.mark.interop


def _auth_json(path: Path, host: str, user: str, password: str) -> Path:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    path.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    return path


def test_basic_auth_sources(basic_registry: Registry, oci_image: Path, workdir: Path) -> None:
    ref = basic_registry.ref("sec/img:1")
    denied = ocipy("copy", f"oci:{oci_image}:latest", ref, check=False)
    assert denied.returncode == 1 and "unauthorized" in denied.stderr and "Traceback" not in denied.stderr
    wrong = ocipy("copy", "--dest-creds", "alice:nope", f"oci:{oci_image}:latest", ref, check=False)
    assert wrong.returncode == 1 and "alice" in wrong.stderr
    ocipy("copy", "--dest-creds", "alice:s3cret", f"oci:{oci_image}:latest", ref)
    # --authfile, $REGISTRY_AUTH_FILE and ~/.docker/config.json
    authfile = _auth_json(workdir / "auth.json", basic_registry.host, "alice", "s3cret")
    out = workdir / "out"
    ocipy("copy", "--src-authfile", str(authfile), ref, f"oci:{out}:a")
    ocipy("tags", "--authfile", str(authfile), basic_registry.ref("sec/img"))
    ocipy("copy", ref, f"oci:{out}:b", env={"REGISTRY_AUTH_FILE": str(authfile)})
    home = workdir / "home"
    (home / ".docker").mkdir(parents=True)
    _auth_json(home / ".docker" / "config.json", f"https://{basic_registry.host}", "alice", "s3cret")
    info = json.loads(ocipy("inspect", ref, env={"OCIPY_TEST_HOME": str(home)}).stdout)
    assert info["RepoTags"] == ["1"]
    assert info["Digest"] == layout_top(oci_image)["digest"]
    # skopeo agrees on what we pushed
    raw = skopeo("inspect", "--tls-verify=false", "--creds", "alice:s3cret", "--raw", ref).stdout
    assert ocipy("inspect", "--raw", "--creds", "alice:s3cret", ref).stdout == raw


def test_bearer_token_flow(token_registry: tuple[Registry, TokenServer], oci_image: Path,
                           workdir: Path) -> None:
    registry, tokens = token_registry
    ref = registry.ref("tok/img:1")
    anon = ocipy("copy", f"oci:{oci_image}:latest", ref, check=False)
    assert anon.returncode == 1 and "unauthorized" in anon.stderr
    tokens.requests.clear()
    ocipy("copy", "--dest-creds", "alice:s3cret", f"oci:{oci_image}:latest", ref)
    # One token per scope, reused for every blob and the manifest.
    push_scopes = [r["scopes"] for r in tokens.requests]
    assert push_scopes.count(["repository:tok/img:pull,push"]) == 1, push_scopes
    assert all(r["authorization"] for r in tokens.requests)
    # Anonymous pull is allowed by this token server; credentials never reach it then.
    tokens.requests.clear()
    ocipy("copy", ref, f"oci:{workdir / 'out'}:x")
    assert tokens.requests and all(r["authorization"] is None for r in tokens.requests)
    assert [r["scopes"] for r in tokens.requests] == [["repository:tok/img:pull"]]
    # Cross-repository mount asks for pull on the source repository too.
    tokens.requests.clear()
    ocipy("copy", "--creds", "alice:s3cret", ref, registry.ref("tok/other:1"))
    scopes = {s for r in tokens.requests for s in r["scopes"]}
    assert "repository:tok/other:pull,push" in scopes and "repository:tok/img:pull" in scopes
    raw = skopeo("inspect", "--tls-verify=false", "--raw", registry.ref("tok/other:1")).stdout
    assert json.loads(raw)["config"]["digest"]


def test_token_refresh(start_registry: object, workdir: Path, oci_image: Path) -> None:
    """A token past its expires_in is fetched again, within one client."""
    ts = TokenServer(workdir / "tok", {"alice": "s3cret"}, anonymous_actions=("pull",), expires_in=1)
    try:
        registry = start_registry(ts.registry_auth())  # type: ignore[operator]
        from ocipy import api_registry
        from ocipy.registry.client import RegistryClient
        from ocipy.registry.endpoints import RegistryOptions

        opts = RegistryOptions(creds="alice:s3cret")
        api_registry.copy(f"oci:{oci_image}:latest", registry.ref("tok/r:1"), dest_options=opts)
        import time

        ts.requests.clear()
        with RegistryClient(registry.host, credentials=("alice", "s3cret")) as client:
            assert client.list_tags("tok/r") == ["1"]
            assert client.list_tags("tok/r") == ["1"]
            assert len(ts.requests) == 1
            time.sleep(1.1)
            assert client.list_tags("tok/r") == ["1"]
            assert len(ts.requests) == 2
    finally:
        ts.stop()
