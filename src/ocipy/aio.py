"""The asyncio face of :mod:`ocipy.api`::

    from ocipy import aio

    async with await aio.create("web", bundle, root=root) as c:
        await c.start()
        result = await c.exec(["sh", "-c", "echo hi"], capture=True)
        async for name, data in c.exec_stream(["sh", "-c", "echo a; sleep 1; echo b"]):
            ...
        await c.kill("KILL")
        code = await c.wait()

Waiting and output never block the event loop: they are pidfds and pipes
watched by the loop.  The steps that make or remove things (create, start,
exec's setup, delete, update...) take a few milliseconds each and run in a
worker thread (:func:`asyncio.to_thread`).  A separate module, so that
neither ``import ocipy.api`` nor the CLI pays for asyncio.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

from ocipy import _stdio, api
from ocipy.api import PIPE, Result

__all__ = ["AsyncStream", "Container", "create", "get", "run", "run_stream", "wait_pid"]


async def wait_pid(pid: int, timeout: float | None = None, start_time: int | None = None) -> int:
    """Wait for `pid` without blocking the loop; its exit status (-1 when it
    is not our child).  TimeoutError after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return _stdio.wait(pid, 0, start_time)
    done = loop.create_future()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_reader(fd, ready)
    try:
        await asyncio.wait_for(done, timeout)
    finally:
        loop.remove_reader(fd)
        os.close(fd)
    return _stdio.wait(pid, 0, start_time)


async def _chunks(pid: int, outputs: dict[int, str], size: int = 65536) -> AsyncIterator[tuple[str, bytes]]:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[int] = asyncio.Queue()
    live = dict(outputs)
    fd_pid = os.pidfd_open(pid)
    watched = [fd_pid, *live]
    try:
        for fd in live:
            os.set_blocking(fd, False)
        for fd in watched:
            loop.add_reader(fd, queue.put_nowait, fd)
        exited = False
        while live and not exited:
            fd = await queue.get()
            if fd == fd_pid:
                exited = True
                continue
            if fd not in live:
                continue
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                continue  # a second wake-up for data already read
            except OSError:
                data = b""  # EIO: the pty's last slave holder is gone
            if data:
                yield live[fd], data
            else:
                loop.remove_reader(fd)
                watched.remove(fd)
                del live[fd]
        for fd, name in live.items():  # exited: what is left, without waiting for EOF
            while True:
                try:
                    data = os.read(fd, size)
                except OSError:
                    break
                if not data:
                    break
                yield name, data
    finally:
        for fd in watched:
            loop.remove_reader(fd)
        os.close(fd_pid)


class AsyncStream:
    """``async for name, data in stream``: a process's output as it comes;
    :attr:`exit_code` is set when the iteration ends.  Leaving early
    (:meth:`aclose`, ``async with``) kills the process and collects it."""

    def __init__(self, pid: int, plan: Any, on_end: Callable[[], None] | None = None) -> None:
        self.pid = pid
        self.exit_code: int | None = None
        self._plan = plan
        self._on_end = on_end
        outputs = plan.outputs()
        self.streams = frozenset(outputs.values())
        self._gen: Any = _chunks(pid, outputs)

    def __aiter__(self) -> AsyncStream:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        if self._gen is None:
            raise StopAsyncIteration
        try:
            item: tuple[str, bytes] = await self._gen.__anext__()
            return item
        except StopAsyncIteration:
            await self._finish(kill=False)
            raise
        except BaseException:
            await self._finish(kill=True)
            raise

    async def _finish(self, kill: bool) -> None:
        if self._gen is None:
            return
        gen, self._gen = self._gen, None
        await gen.aclose()
        try:
            if kill:
                try:
                    os.kill(self.pid, 9)
                except ProcessLookupError:
                    pass
            self.exit_code = await wait_pid(self.pid)
        finally:
            self._plan.close()
            if self._on_end is not None:
                await asyncio.to_thread(self._on_end)

    async def aclose(self) -> None:
        """Stop reading; the process is killed if it still runs, then reaped."""
        await self._finish(kill=True)

    async def __aenter__(self) -> AsyncStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _collect(stream: AsyncStream) -> Result:
    out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    async with stream:
        async for name, data in stream:
            out[name].append(data)
    assert stream.exit_code is not None
    return Result(stream.exit_code, b"".join(out["stdout"]) if "stdout" in stream.streams else None,
                  b"".join(out["stderr"]) if "stderr" in stream.streams else None, stream.pid)  # fmt: skip


class Container:
    """An :class:`ocipy.api.Container` with awaitable methods (``.sync`` is the plain object)."""

    def __init__(self, sync: api.Container) -> None:
        self.sync = sync
        self.id = sync.id
        self.root = sync.root

    @property
    def status(self) -> str:
        """As :attr:`ocipy.api.Container.status`."""
        return self.sync.status

    @property
    def pid(self) -> int:
        """As :attr:`ocipy.api.Container.pid`."""
        return self.sync.pid

    @property
    def bundle(self) -> str:
        """As :attr:`ocipy.api.Container.bundle`."""
        return self.sync.bundle

    async def start(self) -> None:
        """As :meth:`ocipy.api.Container.start`, without blocking the event loop."""
        await asyncio.to_thread(self.sync.start)

    async def wait(self, timeout: float | None = None) -> int:
        """The init's exit status, without blocking the loop (see :meth:`ocipy.api.Container.wait`)."""
        loaded = self.sync._known()
        start_time = loaded.data.get("pid_start")
        return await wait_pid(loaded.pid, timeout, start_time if isinstance(start_time, int) else None)

    async def kill(self, signal: str | int = "TERM", *, all: bool = False) -> None:  # noqa: A002
        """As :meth:`ocipy.api.Container.kill`, without blocking the event loop."""
        await asyncio.to_thread(self.sync.kill, signal, all=all)

    async def pause(self) -> None:
        """As :meth:`ocipy.api.Container.pause`, without blocking the event loop."""
        await asyncio.to_thread(self.sync.pause)

    async def resume(self) -> None:
        """As :meth:`ocipy.api.Container.resume`, without blocking the event loop."""
        await asyncio.to_thread(self.sync.resume)

    async def processes(self) -> list[int]:
        """As :meth:`ocipy.api.Container.processes`, without blocking the event loop."""
        return await asyncio.to_thread(self.sync.processes)

    async def stats(self) -> dict[str, Any]:
        """As :meth:`ocipy.api.Container.stats`, without blocking the event loop."""
        return await asyncio.to_thread(self.sync.stats)

    async def update(self, resources: dict[str, Any] | None = None, **limits: Any) -> dict[str, Any]:
        """As :meth:`ocipy.api.Container.update`, without blocking the event loop."""
        return await asyncio.to_thread(self.sync.update, resources, **limits)

    async def exec(self, args: list[str] | None = None, *, capture: bool = False, stdin: Any = None,
                   **options: Any) -> Result:  # fmt: skip
        """:func:`ocipy.api.exec`, the output read by the loop (with `capture`)."""
        if not capture:
            return await asyncio.to_thread(self.sync.exec, args, stdin=stdin, **options)
        return await _collect(await self._stream(args, stdin, PIPE, PIPE, options))

    def exec_stream(self, args: list[str] | None = None, *, stdin: Any = None, stdout: Any = PIPE,
                    stderr: Any = PIPE, **options: Any) -> _LazyStream:  # fmt: skip
        """``async for name, data in c.exec_stream(args)``; then ``.exit_code``."""
        return _LazyStream(lambda: self._stream(args, stdin, stdout, stderr, options))

    async def _stream(self, args: list[str] | None, stdin: Any, stdout: Any, stderr: Any,
                      options: dict[str, Any]) -> AsyncStream:  # fmt: skip
        pid, plan, _ = await asyncio.to_thread(_stdio.spawn, self.id, args, self.root, dict(options),
                                               (stdin, stdout, stderr))  # fmt: skip
        return AsyncStream(pid, plan)

    async def delete(self, force: bool = False) -> None:
        """As :meth:`ocipy.api.Container.delete`, without blocking the event loop."""
        await asyncio.to_thread(self.sync.delete, force)

    async def __aenter__(self) -> Container:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(api.delete, self.id, root=self.root, force=True)


class _LazyStream:
    """An AsyncStream whose process starts at the first ``__anext__``
    (``exec_stream`` itself is not a coroutine, so that ``async for`` takes it)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._stream: AsyncStream | None = None

    @property
    def exit_code(self) -> int | None:
        return self._stream.exit_code if self._stream is not None else None

    def __aiter__(self) -> _LazyStream:
        return self

    async def __anext__(self) -> tuple[str, bytes]:
        if self._stream is None:
            self._stream = await self._make()
        return await self._stream.__anext__()

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()

    async def __aenter__(self) -> _LazyStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def create(container_id: str, bundle: str, *, root: str | None = None, **options: Any) -> Container:
    """:func:`ocipy.api.create`, in a worker thread."""
    return Container(await asyncio.to_thread(api.create, container_id, bundle, root=root, **options))


async def get(container_id: str, *, root: str | None = None) -> Container:
    """As :func:`ocipy.api.get`: the container with this id, as an awaitable object."""
    return Container(await asyncio.to_thread(api.get, container_id, root=root))


async def run_stream(container_id: str, bundle: str, *, root: str | None = None, keep: bool = False,
                     **options: Any) -> AsyncStream:  # fmt: skip
    """:func:`ocipy.api.run_stream` with the output read by the loop."""
    sync = await asyncio.to_thread(api.run_stream, container_id, bundle, root=root, keep=True, **options)
    # the sync stream's pipes and plan are taken over here; it must not read or delete
    plan, sync._chunks, sync._plan = sync._plan, None, None

    def end() -> None:
        if not keep:
            api.delete(container_id, root=root, force=True)

    return AsyncStream(sync.pid, plan, end)


async def run(container_id: str, bundle: str, *, root: str | None = None, capture: bool = False,
              keep: bool = False, **options: Any) -> Result:  # fmt: skip
    """:func:`ocipy.api.run` in the foreground: await its end; with `capture` its output."""
    stdout = options.pop("stdout", PIPE if capture else None)
    stderr = options.pop("stderr", PIPE if capture else None)
    # with nothing to read, the stream only awaits the process's exit
    stream = await run_stream(container_id, bundle, root=root, keep=keep, stdout=stdout, stderr=stderr, **options)
    return await _collect(stream)
