"""A user's program written against the documented API passes mypy --strict
(issue 15: "type hints complete")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent.parent / "src"

USER_CODE = '''
import asyncio
from ocipy import aio, api
from ocipy.errors import ContainerNotFound, InvalidConfig, KernelError, OcipyError


def main(bundle: str, root: str) -> int:
    result: api.Result = api.run("job", bundle, root=root, capture=True)
    out: bytes | None = result.stdout
    with api.create("web", bundle, root=root) as c:
        c.start()
        r = c.exec(["sh", "-c", "echo hi"], capture=True, env={"A": "b"}, user="1000:1000")
        code: int = r.exit_code
        stream: api.Stream = c.exec_stream(["ps"])
        for name, data in stream:
            assert isinstance(name, str) and isinstance(data, bytes)
        last: int | None = stream.exit_code
        with c.spawn(["cat"], stdin=api.PIPE, tty=False) as p:
            pid: int = p.pid
        limits: dict[str, object] = c.update(memory=1 << 26)
        pids: list[int] = c.processes()
        c.kill("KILL")
        status: int = c.wait(timeout=5.0)
    detached: api.Container = api.run("d", bundle, root=root, detach=True)
    try:
        api.get("x", root=root)
    except ContainerNotFound as e:
        print(e.id)
    except InvalidConfig as e:
        print(e.field)
    except KernelError as e:
        print(e.op, e.path, e.errno)
    except OcipyError:
        pass
    for container in api.list_containers(root=root):
        print(container.id, container.status, container.pid, container.bundle)
    return code + status + pid + len(pids) + len(limits) + (last or 0) + len(out or b"") + len(detached.id)


async def amain(bundle: str, root: str) -> int:
    async with await aio.create("a", bundle, root=root) as c:
        await c.start()
        r = await c.exec(["true"], capture=True)
        async for name, data in c.exec_stream(["ps"]):
            print(name, data)
        return r.exit_code + await c.wait()


def images(layout: str, rootfs: str) -> int:
    from ocipy import api_image
    from ocipy.errors import ImageError, RegistryError

    api_image.init(layout)
    api_image.new(f"oci:{layout}:base")
    base: api_image.Image = api_image.open(f"oci:{layout}:base", platform="linux/amd64")
    app = base.add_layer(rootfs, compression="zstd").configure(cmd=["/bin/sh"], env=["A=1"]).tag("v1")
    digest: str = app.digest
    cmd: list[str] | None = app.cmd
    env: list[str] = app.env
    labels: dict[str, str] = app.labels
    layers: list[dict[str, object]] = app.layers
    tags: list[str] = app.tags
    platform: dict[str, str] = app.platform

    def on_bytes(layer: str, done: int, total: int) -> None:
        print(layer, done, total)

    callback: api_image.ProgressCallback = on_bytes
    with api_image.reporter("auto") as bars:
        copied: api_image.Image = app.copy_to("oci-archive:/tmp/a.tar", progress=bars)
        pushed: str = api_image.push(app.reference, "docker://127.0.0.1:5000/app:1", progress=callback)
    config: dict[str, object] = copied.unpack("/tmp/bundle", progress=callback)
    written: str = app.export("docker-archive:/tmp/d.tar:app:1")
    try:
        api_image.copy("oci:/nowhere:x", "oci:/tmp/x:y", progress=None)
    except RegistryError as e:
        print(e.status, e.code)
    except ImageError:
        pass
    info: dict[str, object] = app.inspect()
    return app.size + len(digest + written + pushed) + len(cmd or []) + len(env) + len(labels) \
        + len(layers) + len(tags) + len(platform) + len(config) + len(info)


print(main("b", "r"), asyncio.run(amain("b", "r")), images("/tmp/l", "/tmp/r"))
'''


def test_a_users_program_passes_mypy_strict(tmp_path: Path) -> None:
    user = tmp_path / "user_program.py"
    user.write_text(USER_CODE)
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)],
                          capture_output=True, text=True, env={"MYPYPATH": str(SRC), "PATH": "/usr/bin:/bin"})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
