"""`-p` and `--network` as podman reads them (no root needed)."""

from __future__ import annotations

import pytest

from ocipy.engine import network
from ocipy.errors import OcipyError


@pytest.mark.parametrize(("text", "want"), [
    ("8080:80", "0.0.0.0:8080:80/tcp"),
    ("127.0.0.1:8080:80", "127.0.0.1:8080:80/tcp"),
    ("127.0.0.1:5353:53/udp", "127.0.0.1:5353:53/udp"),
    ("[::1]:8080:80", "::1:8080:80/tcp"),
])  # fmt: skip
def test_ports(text: str, want: str) -> None:
    assert repr(network.parse_port(text)) == want


@pytest.mark.parametrize(("text", "words"), [
    ("80", "expected [IP:]HOSTPORT:PORT"),
    ("0:80", "host port '0'"),
    ("8080:70000", "port '70000'"),
    ("8080:８０", "port '８０'"),
    ("8080:80/sctp", "protocol"),
    ("nothost:8080:80", "not an IP address"),
])  # fmt: skip
def test_bad_ports_name_the_value(text: str, words: str) -> None:
    with pytest.raises(OcipyError) as err:
        network.parse_port(text)
    assert f"-p {text}:" in str(err.value) and words in str(err.value)


def test_modes_shape_the_namespaces(tmp_path: object) -> None:
    def config() -> dict[str, object]:
        return {"linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/1/ns/net"}]}}

    for mode, has_netns in (("none", True), ("host", False), ("private", True)):
        c = config()
        network.configure(c, mode, [], str(tmp_path))
        types = [ns for ns in c["linux"]["namespaces"] if ns["type"] == "network"]  # type: ignore[index]
        assert types == ([{"type": "network"}] if has_netns else []), mode
        assert bool(c.get("hooks")) == (mode == "private"), mode
    with pytest.raises(OcipyError, match="-p needs --network private"):
        network.configure(config(), "none", [network.parse_port("1:2")], str(tmp_path))
    with pytest.raises(OcipyError, match="--network 'bridge'"):
        network.configure(config(), "bridge", [], str(tmp_path))
