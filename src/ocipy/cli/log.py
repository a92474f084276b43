"""Log lines as runc writes them.

With ``--log-format json`` every line is ``{"level":…,"msg":…,"time":…}``;
containerd and conmon read the last error line of the log file and show its
``msg``.  Errors always go to stderr too.
"""

from __future__ import annotations

import os
import sys

_path: str | None = None
_json = False
_debug = False


def setup(path: str | None, fmt: str, debug: bool) -> None:
    global _path, _json, _debug
    _path, _json, _debug = path, fmt == "json", debug


def _timestamp() -> str:
    import time

    now = time.time()
    frac = f"{now % 1:.9f}"[1:]
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + frac + "Z"


def _write(level: str, msg: str) -> None:
    if _json:
        from ocipy import jsonfast

        line = jsonfast.dumps({"level": level, "msg": msg, "time": _timestamp()}) + "\n"
    else:
        line = f'time="{_timestamp()}" level={level} msg="{msg}"\n'
    if _path:
        try:
            fd = os.open(_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError:
            pass


def error(msg: str) -> None:
    _write("error", msg)
    # conmon and containerd read the log file; people read stderr.
    sys.stderr.write(f"ocipy: {msg}\n" if not _json or not _path else msg + "\n")


def warning(msg: str) -> None:
    _write("warning", msg)
    sys.stderr.write(f"ocipy: warning: {msg}\n")


def debug(msg: str) -> None:
    if _debug:
        _write("debug", msg)
        if not _path:
            sys.stderr.write(f"ocipy: debug: {msg}\n")
