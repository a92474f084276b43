"""Hooks (config.md "POSIX-platform Hooks"): each gets the container state on stdin.

As runc does: a hook without `env` inherits the runtime's environment (GPU
hooks rely on PATH); a failure is reported as "error running hook: ..."
(the wording tools look for).
"""

from __future__ import annotations

import os

from ocipy.errors import HookError

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.config import Hook


def hook_env(hook: Hook) -> dict[str, str]:
    """The hook's environment: its `env` when given, else the runtime's own (runc's behaviour)."""
    if hook.env is None:
        return dict(os.environ)
    env = {}
    for item in hook.env:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _describe_status(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    import _signal  # type: ignore[import-not-found]  # the C module: `signal` pulls in enum

    name = _signal.strsignal(-returncode) or f"signal {-returncode}"
    return f"signal: {name.lower()}"


def run_hooks(kind: str, hooks: list[Hook], state: dict[str, Any], cwd: str | None = None) -> None:
    """Run every hook of `kind` in order (in `cwd` when given); the first failure raises HookError."""
    if not hooks:
        return
    import subprocess

    from ocipy import jsonfast

    payload = jsonfast.dumps(state).encode()
    for i, hook in enumerate(hooks):
        path, args, timeout = hook.path, hook.args, hook.timeout
        where = f"error running hook: {kind} hook #{i} ({path})"
        try:
            proc = subprocess.Popen(
                args, executable=path, env=hook_env(hook), stdin=subprocess.PIPE, cwd=cwd,
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
            raise HookError(f"{where}: {_describe_status(proc.returncode)}{tail}")
