"""RegistryError carries the HTTP status and the distribution error codes, and
429/5xx are retried with backoff that honours Retry-After (issue 13, defect 8).

A fake registry (http.server on 127.0.0.1) answers a scripted list of
statuses; the real docker-registry gives the spec's error bodies.  Waits are
recorded through ``RegistryClient._sleep`` instead of slept, so the tests
check the delays themselves and run fast.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import (
    EMPTY_CONFIG,
    FakeServer,
    QuietHandler,
    Registry,
    image_manifest,
    make_layout,
    ocipy,
)

from ocipy import api_registry
from ocipy.errors import DISTRIBUTION_ERROR_CODES, RegistryError
from ocipy.registry.client import RegistryClient
from ocipy.registry.endpoints import RegistryOptions

pytestmark = pytest.mark.interop

MANIFEST = image_manifest(EMPTY_CONFIG, [])


def _errors(code: str, message: str) -> bytes:
    return json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()


class Scripted(FakeServer):
    """Answers manifest GETs from ``script``: (status, headers, body) each, then 200 MANIFEST."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], bytes]] = []
        self.times: list[float] = []
        owner = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                if self.path == "/v2/":
                    code, headers, body = 200, {}, b"{}"
                else:
                    owner.times.append(time.monotonic())
                    if owner.script:
                        code, headers, body = owner.script.pop(0)
                    else:
                        code, headers, body = 200, {
                            "Content-Type": "application/vnd.oci.image.manifest.v1+json"}, MANIFEST
                self.reply(code, body, headers)

        super().__init__(Handler)


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    s = Scripted()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waited: list[float] = []
    monkeypatch.setattr(RegistryClient, "_sleep", staticmethod(waited.append))
    return waited


def _get(host: str, retry_times: int = 3) -> bytes:
    with RegistryClient(host, retry_times=retry_times) as c:
        return c.get_manifest("r/img", "1")[0]


def test_429_then_success_waits_retry_after_seconds(scripted: Scripted, sleeps: list[float]) -> None:
    busy = _errors("TOOMANYREQUESTS", "slow down")
    scripted.script = [(429, {"Retry-After": "2"}, busy), (429, {"Retry-After": "0"}, busy)]
    assert _get(scripted.host) == MANIFEST
    assert sleeps == [2.0, 0.0]
    assert len(scripted.times) == 3


def test_503_then_success_waits_for_an_http_date(scripted: Scripted, sleeps: list[float]) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    scripted.script = [(503, {"Retry-After": when}, b"down for maintenance")]
    assert _get(scripted.host) == MANIFEST
    assert len(sleeps) == 1 and 3.5 < sleeps[0] <= 5.0, sleeps


def test_5xx_without_retry_after_backs_off_exponentially(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(503, {}, b""), (502, {}, b""), (500, {}, b"")]
    assert _get(scripted.host) == MANIFEST
    # 0.2 s, 0.4 s, 0.8 s, each with +-25 % jitter
    assert len(sleeps) == 3
    for i, d in enumerate(sleeps):
        assert 0.2 * 2 ** i * 0.75 <= d <= 0.2 * 2 ** i * 1.25, sleeps


def test_retries_are_bounded_and_the_error_has_status_and_code(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(503, {}, _errors("UNAVAILABLE", "try later"))] * 10
    with pytest.raises(RegistryError) as e:
        _get(scripted.host, retry_times=2)
    assert len(scripted.times) == 3 and len(sleeps) == 2
    assert e.value.status == 503 and e.value.code == "UNAVAILABLE"
    assert "HTTP 503" in str(e.value) and "try later" in str(e.value)


def test_a_long_retry_after_is_not_waited_for(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(429, {"Retry-After": "3600"}, _errors("TOOMANYREQUESTS", "pull rate limit"))]
    with pytest.raises(RegistryError) as e:
        _get(scripted.host)
    assert sleeps == [] and len(scripted.times) == 1
    assert e.value.status == 429 and e.value.code == "TOOMANYREQUESTS"
    assert "Retry-After: 3600" in str(e.value)


def test_real_sleep_honours_retry_after(scripted: Scripted) -> None:
    scripted.script = [(429, {"Retry-After": "1"}, b"")]
    assert _get(scripted.host) == MANIFEST
    assert scripted.times[1] - scripted.times[0] >= 0.95


def test_404_is_not_retried_and_denied_codes_come_through(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(404, {}, _errors("MANIFEST_UNKNOWN", "manifest unknown"))]
    with pytest.raises(RegistryError) as e:
        _get(scripted.host)
    assert (e.value.status, e.value.code) == (404, "MANIFEST_UNKNOWN") and sleeps == []
    scripted.script = [(403, {}, json.dumps({"errors": [
        {"code": "DENIED", "message": "requested access to the resource is denied"},
        {"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}).encode())]
    with pytest.raises(RegistryError) as e:
        _get(scripted.host)
    assert e.value.status == 403 and e.value.codes == ("DENIED", "NAME_UNKNOWN")
    assert set(e.value.codes) <= DISTRIBUTION_ERROR_CODES


def test_hostile_error_text_stays_one_line(scripted: Scripted, tmp_path: Path) -> None:
    evil = "line one\nline two\x1b[31m red\r\x07"
    scripted.script = [(400, {}, json.dumps({"errors": [{"code": "BAD\nCODE", "message": evil}]}).encode())]
    r = ocipy("copy", f"docker://{scripted.host}/r/img:1", f"oci:{tmp_path / 'out'}:x", check=False)
    assert r.returncode != 0
    assert r.stderr.count("\n") == 1 and "\x1b" not in r.stderr and "\x07" not in r.stderr, r.stderr
    assert "line one line two" in r.stderr and "HTTP 400" in r.stderr


def test_real_registry_manifest_unknown(registry: Registry, workdir: Path) -> None:
    """docker-registry's own error body: 404 with MANIFEST_UNKNOWN (distribution spec, "Error Codes")."""
    ocipy("copy", f"oci:{make_layout(workdir / 'l')}:latest", f"docker://{registry.host}/team/app:1")
    with pytest.raises(RegistryError) as e:
        api_registry.copy(f"docker://{registry.host}/team/app:missing", f"oci:{workdir / 'out'}:x",
                          src_options=RegistryOptions(retry_times=0))
    assert e.value.status == 404 and e.value.code == "MANIFEST_UNKNOWN"
    with pytest.raises(RegistryError) as e:
        api_registry.tags(f"docker://{registry.host}/team/nothing-here", options=RegistryOptions(retry_times=0))
    assert e.value.status == 404 and e.value.code == "NAME_UNKNOWN"


def test_real_registry_unauthorized(basic_registry: Registry, workdir: Path) -> None:
    with pytest.raises(RegistryError) as e:
        api_registry.tags(f"docker://{basic_registry.host}/team/app", options=RegistryOptions(retry_times=0))
    assert e.value.status == 401 and e.value.code == "UNAUTHORIZED"
    assert "no credentials" in str(e.value)
