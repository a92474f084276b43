"""The runtime's log lines, in the format runc (logrus) writes them.

``--log-format text``: ``time="2026-01-02T03:04:05Z" level=debug msg="..."``;
``--log-format json``: ``{"level":"debug","msg":"...","time":"..."}``.  The
lines go to ``--log FILE``, or to stderr when no file is given.  containerd
and conmon read the last ``error`` line of the file and show its ``msg``.

The sink is opened once, when the command starts (``--log FILE``, or a dup of
stderr with ``--debug``), as a close-on-exec descriptor: the children create
and exec fork (bootstrap, init, exec'd process) inherit it and can log after
entering the container's mount namespace, where the log's path may not
exist; execve closes it, so nothing leaks into the container.  Should the
file not open, each line tries again (and is dropped if it cannot).

Nothing here imports more than ``posix`` and ``sys``: this module is on every
command's start-up path (``os`` costs ~0.9 ms there, see runtime/store.py),
and in the children after the namespaces are entered (where nothing may be
imported).

Library use (no :func:`setup`, which only the CLI calls): warnings go to the
stdlib :mod:`logging` module, to the logger the caller names (``ocipy.runtime``,
``ocipy.spec``, ...), so a program decides where they go; nothing is
printed in runc's format.  The CLI does not import :mod:`logging` (~10 ms
with what it pulls in, half of a ``state``): it writes runc's lines itself.
Debug lines are never forwarded: they are also written from forked children
inside the container, where a logging handler must not run.
"""

from __future__ import annotations

import posix
import sys

_path: str | None = None
_json = False
_debug = False
_fd = -1  # the open sink with --debug (a dup of stderr without --log)
_cli = False  # setup() was called: runc's lines on stderr and --log, not `logging`


def setup(path: str | None, fmt: str, debug: bool) -> None:
    """Called once by the CLI with the global flags (the API leaves logging off)."""
    global _path, _json, _debug, _fd, _cli
    _path, _json, _debug, _cli = path or None, fmt == "json", debug, True
    if _json:
        import _json  # noqa: F401 - loaded now: a child in the container's mount namespace cannot
    _close_sink()
    try:
        if _path:  # opened (created) at once, as runc does, whether or not anything is logged
            _fd = posix.open(_path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o644)
        elif debug:
            _fd = posix.dup(2)  # close-on-exec, as every fd Python makes
    except OSError:
        _fd = -1


def _close_sink() -> None:
    global _fd
    if _fd >= 0:
        try:
            posix.close(_fd)
        except OSError:
            pass
        _fd = -1


def release() -> None:
    """Close the inherited sink in a long-lived child (the init waits for `start`):
    holding a dup of the caller's stderr would keep a pipe the caller reads from
    open until then. Later debug lines of this process are dropped."""
    global _debug, _path
    _close_sink()
    _debug, _path = False, None  # the path may mean another file in the container's mount namespace


def enabled() -> bool:
    """Whether debug lines are written (build costly messages only then)."""
    return _debug


def timestamp() -> str:
    """RFC 3339 in local time, to the second, as logrus prints it."""
    import time

    now = time.localtime()
    offset = now.tm_gmtoff or 0
    if offset == 0:
        zone = "Z"
    else:
        sign = "+" if offset > 0 else "-"
        hours, minutes = divmod(abs(offset) // 60, 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    return time.strftime("%Y-%m-%dT%H:%M:%S", now) + zone


# Characters logrus leaves unquoted in a text value.
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._/@^+")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def quote_text(value: str) -> str:
    """A text-format value: bare when plain, else quoted as Go's %q does."""
    if value and all(c in _PLAIN for c in value):
        return value
    out = []
    for c in value:
        if c in _ESCAPES:
            out.append(_ESCAPES[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def json_string(value: str) -> str:
    """A JSON string as Go's encoding/json writes it (<, > and & escaped, UTF-8 kept)."""
    import _json

    text: str = _json.encode_basestring(value)
    if "<" in text or ">" in text or "&" in text or "\u2028" in text or "\u2029" in text:
        for c, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                       ("\u2029", "\\u2029")):  # fmt: skip
            text = text.replace(c, esc)
    return text


def format_line(level: str, msg: str) -> str:
    if _json:
        return f'{{"level":"{level}","msg":{json_string(msg)},"time":"{timestamp()}"}}\n'
    return f'time="{timestamp()}" level={level} msg={quote_text(msg)}\n'


def _to_file(line: str) -> None:
    data = line.encode("utf-8", "surrogateescape")
    if _fd >= 0:
        try:
            posix.write(_fd, data)
        except OSError:
            pass
        return
    if _path:
        try:
            fd = posix.open(_path, posix.O_WRONLY | posix.O_APPEND | posix.O_CREAT | posix.O_CLOEXEC, 0o644)
            try:
                posix.write(fd, data)
            finally:
                posix.close(fd)
        except OSError:
            pass


def error(msg: str) -> None:
    """An error: a line in the log file, and always one line on stderr."""
    if _path:
        _to_file(format_line("error", msg))
    # conmon and containerd read the log file; people read stderr.
    sys.stderr.write(f"ocipy: {msg}\n" if not _json or not _path else msg + "\n")


def warning(msg: str, logger: str = "ocipy.runtime") -> None:
    """A warning: runc's line for the CLI; for a library user, a record on
    the `logger` of the stdlib logging module."""
    if not _cli:
        import logging

        logging.getLogger(logger).warning("%s", msg)
        return
    if _path:
        _to_file(format_line("warning", msg))
    sys.stderr.write(f"ocipy: warning: {msg}\n")


def debug(msg: str) -> None:
    """A debug line to --log, or to stderr without one; nothing without --debug.

    Safe in a forked child (a single write to the inherited descriptor)."""
    if _debug:
        _to_file(format_line("debug", msg))
