"""Hooks (config.md "POSIX-platform Hooks"): each gets the container state on stdin."""

from __future__ import annotations

from ocipy.errors import HookError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any


def run_hooks(kind: str, hooks: list[dict[str, Any]] | None, state: dict[str, Any]) -> None:
    """Run every hook of `kind` in order; the first failure raises HookError."""
    if not hooks:
        return
    import subprocess

    from ocipy import jsonfast

    payload = jsonfast.dumps(state).encode()
    for i, hook in enumerate(hooks):
        path = hook["path"]
        args = hook.get("args") or [path]
        env = {}
        for item in hook.get("env") or []:
            key, _, value = item.partition("=")
            env[key] = value
        timeout = hook.get("timeout")
        where = f"{kind} hook #{i} ({path})"
        try:
            proc = subprocess.Popen(
                args, executable=path, env=env, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, close_fds=True,
            )  # fmt: skip
        except OSError as e:
            raise HookError(f"{where}: cannot run: {e.strerror}") from None
        try:
            out, err = proc.communicate(payload, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise HookError(f"{where}: timed out after {timeout}s") from None
        except BrokenPipeError:
            out, err = b"", b""
            proc.wait()
        if proc.returncode != 0:
            detail = (err or out).decode(errors="replace").strip().splitlines()
            tail = f": {detail[-1]}" if detail else ""
            raise HookError(f"{where}: exit status {proc.returncode}{tail}")
