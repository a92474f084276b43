"""`ocipy image run` options applied to config.json as podman run applies them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from ocipy.engine.options import READ_ONLY_TMPFS, RunOptions, apply, parse_bytes
from ocipy.errors import OcipyError
from ocipy.spec.runtime import default_spec

IMAGE = {"config": {"Entrypoint": ["/entry"], "Cmd": ["serve", "--port", "80"], "Env": ["PATH=/bin", "A=image"]}}


def run(tmp_path: Path, image: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    config = copy.deepcopy(default_spec())
    config["process"]["env"] = list((image or IMAGE)["config"].get("Env", []))
    rootfs = tmp_path / "rootfs"
    (rootfs / "etc").mkdir(parents=True, exist_ok=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nweb:x:33:44::/srv:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\nweb:x:44:\nextra:x:55:web\n")
    apply(config, image or IMAGE, str(rootfs), RunOptions(**kw))
    return config


def test_command_entrypoint_and_arguments(tmp_path: Path) -> None:
    assert run(tmp_path)["process"]["args"] == ["/entry", "serve", "--port", "80"]
    assert run(tmp_path, args=["x"])["process"]["args"] == ["/entry", "x"]  # args replace Cmd
    assert run(tmp_path, entrypoint="/bin/sh")["process"]["args"] == ["/bin/sh"]  # --entrypoint drops Cmd
    assert run(tmp_path, entrypoint='["/bin/sh","-c"]', args=["id"])["process"]["args"] == ["/bin/sh", "-c", "id"]
    with pytest.raises(OcipyError, match="--entrypoint"):
        run(tmp_path, entrypoint="[1]")
    with pytest.raises(OcipyError, match="no command"):
        run(tmp_path, image={"config": {}})


def test_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / "env"
    env_file.write_text("# comment\n\nA=file\nB=file\n")
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET", raising=False)
    env = run(tmp_path, env_files=[str(env_file)], env=["B=flag", "FROM_HOST", "NOT_SET", "C=x=y"])["process"]["env"]
    assert env == ["PATH=/bin", "A=file", "B=flag", "FROM_HOST=h", "C=x=y"]
    with pytest.raises(OcipyError, match="--env-file"):
        run(tmp_path, env_files=[str(tmp_path / "missing")])
    with pytest.raises(OcipyError, match="-e '=x'"):
        run(tmp_path, env=["=x"])


def test_user_workdir_hostname_tty(tmp_path: Path) -> None:
    c = run(tmp_path, user="web", workdir="/srv", hostname="box", tty=True)
    assert c["process"]["user"] == {"uid": 33, "gid": 44, "additionalGids": [55]}
    assert c["process"]["cwd"] == "/srv" and c["hostname"] == "box" and c["process"]["terminal"] is True
    assert run(tmp_path, user="1000:2000")["process"]["user"] == {"uid": 1000, "gid": 2000}
    with pytest.raises(OcipyError, match="-u nobody"):
        run(tmp_path, user="nobody")
    with pytest.raises(OcipyError, match="-w srv"):
        run(tmp_path, workdir="srv")


def test_capabilities(tmp_path: Path) -> None:
    caps = run(tmp_path, cap_add=["sys_ptrace"], cap_drop=["CAP_KILL"])["process"]["capabilities"]
    for name in ("bounding", "effective", "permitted"):
        assert "CAP_SYS_PTRACE" in caps[name] and "CAP_KILL" not in caps[name]
    none = run(tmp_path, cap_drop=["all"], cap_add=["NET_BIND_SERVICE"])["process"]["capabilities"]
    assert none["bounding"] == ["CAP_NET_BIND_SERVICE"]
    with pytest.raises(OcipyError, match="--cap-add CAP_NOPE: unknown capability"):
        run(tmp_path, cap_add=["CAP_NOPE"])


def test_resources(tmp_path: Path) -> None:
    r = run(tmp_path, memory="512m", cpus="1.5", pids_limit="100")["linux"]["resources"]
    assert r["memory"]["limit"] == 512 << 20
    assert r["cpu"] == {"quota": 150000, "period": 100000}
    assert r["pids"]["limit"] == 100
    assert run(tmp_path, pids_limit="-1")["linux"]["resources"]["pids"]["limit"] == -1
    assert parse_bytes("1g", "--memory") == 1 << 30 and parse_bytes("2048", "--memory") == 2048
    assert parse_bytes("10MB", "--memory") == 10 << 20
    for bad in ("1x", "", "m", "١٢m", "99999999999999999999g"):
        with pytest.raises(OcipyError, match="--memory"):
            parse_bytes(bad, "--memory")
    with pytest.raises(OcipyError, match="minimum is 6m"):
        run(tmp_path, memory="1m")
    for bad in ("0", "-1", "abc", "nan", "inf", "２"):
        with pytest.raises(OcipyError, match="--cpus"):
            run(tmp_path, cpus=bad)


def test_volumes_and_read_only(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    c = run(tmp_path, volumes=[f"{data}:/data:ro", f"{data}:/rw"], read_only=True)
    binds = [m for m in c["mounts"] if m["type"] == "bind" and m["source"] == str(data)]
    assert binds[0] == {"destination": "/data", "type": "bind", "source": str(data),
                        "options": ["rbind", "ro", "rprivate"]}  # fmt: skip
    assert binds[1]["options"] == ["rbind", "rw", "rprivate"]
    assert c["root"]["readonly"] is True
    assert {m["destination"] for m in c["mounts"] if m["type"] == "tmpfs"} >= set(READ_ONLY_TMPFS)
    for bad, words in ((f"{data}", "SRC:DST"), ("vol:/x", "named volumes"), (f"{data}:rel", "destination"),
                       (f"{tmp_path}/none:/x", "no such file"), (f"{data}:/x:ro,rw", "conflicting"),
                       (f"{data}:/x:bogus", "bogus")):  # fmt: skip
        with pytest.raises(OcipyError, match=words):
            run(tmp_path, volumes=[bad])
