"""Progress of blob transfers: the one callback type and the renderers.

Whatever moves blobs (:mod:`ocipy.content.copy`, :mod:`ocipy.image.unpack`)
reports through a :data:`ProgressCallback`, called as
``progress(layer_digest, done_bytes, total_bytes)``:

* a blob that is transferred reports ``done=0`` first, then growing counts
  below ``total`` while bytes move, then ``done == total`` exactly once when
  it has been verified and stored;
* a blob the destination already has reports ``done == total`` once, and
  nothing before it (that is how a renderer tells "skipped" from "copied";
  an empty blob, ``total == 0``, has only that one call either way).

Calls come from several threads at once (blobs are copied in parallel).
:func:`reporter` makes a :class:`Reporter`, such a callback that renders:
``"tty"`` a bar per layer (bytes, total, rate) through ``rich``, imported only
when such a renderer is made; ``"lines"`` one line per finished layer;
``"quiet"`` nothing; ``"auto"`` the first where the stream is a terminal,
else the second.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import IO, Any

ProgressCallback = Callable[[str, int, int], None]  # (layer_digest, done_bytes, total_bytes)

MODES = ("auto", "tty", "lines", "quiet")

__all__ = ["MODES", "BlobProgress", "ProgressCallback", "Reporter", "human_size", "reporter", "short_digest"]


def human_size(n: int) -> str:
    """Bytes in IEC units with one decimal: ``512 B``, ``2.1 MiB``."""
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def short_digest(digest: str) -> str:
    """``sha256:`` and the first 12 hex digits, as docker and podman show layers."""
    algo, sep, hexpart = digest.partition(":")
    if not sep or len(hexpart) <= 12:
        return digest
    return f"{algo}:{hexpart[:12]}…"


class BlobProgress:
    """Turns byte counts of one blob into calls of a :data:`ProgressCallback`
    that keep its promise: 0 at the start, counts below the total while bytes
    move (a download that starts over may count past it), the total once at
    the end.  A ``None`` callback makes every method a no-op."""

    __slots__ = ("_cb", "digest", "total", "done", "_finished")

    def __init__(self, callback: ProgressCallback | None, digest: str, total: int) -> None:
        self._cb = callback
        self.digest = digest
        self.total = max(0, int(total))
        self.done = 0
        self._finished = False

    def start(self) -> None:
        if self._cb is not None and self.total:  # an empty blob has only its last call
            self._cb(self.digest, 0, self.total)

    def add(self, n: int) -> None:
        """`n` more bytes moved (the shape of the store's ``Progress``)."""
        self.done += n
        if self._cb is not None and not self._finished and self.total:
            self._cb(self.digest, min(self.done, max(self.total - 1, 0)), self.total)

    def finish(self) -> None:
        if self._cb is not None and not self._finished:
            self._finished = True
            self._cb(self.digest, self.total, self.total)

    def skipped(self) -> None:
        """The blob was there already: one call with ``done == total``."""
        self.finish()


class Reporter:
    """A :data:`ProgressCallback` that renders; thread-safe.  This base class
    renders nothing (``reporter("quiet")``); it tracks each blob and hands the
    renderers three events: started, advanced, finished (copied or skipped).
    Use it as a context manager, or call :meth:`close` when done."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._blobs: dict[str, list[int]] = {}  # digest -> [done, total, finished]
        self._closed = False
        self.show_skipped = True  # False: only blobs that moved are shown

    def __call__(self, digest: str, done: int, total: int) -> None:
        with self._lock:
            if self._closed:
                return
            try:
                self._event(digest, done, total)
            except (OSError, ValueError):  # a closed or broken stream must not fail the copy it reports on
                self._closed = True

    def _event(self, digest: str, done: int, total: int) -> None:
        """Track one call; the renderers' hooks see started, advanced, finished."""
        state = self._blobs.get(digest)
        if state is None or state[2]:  # new, or moved again (one reporter for a copy and an unpack)
            self._blobs[digest] = state = [done, total, 0]
            if done >= total:  # first call is the last: the destination had it
                state[2] = 1
                self._finished(digest, total, True)
                return
            self._started(digest, total)
        state[0], state[1] = done, total
        if done >= total:
            state[2] = 1
            self._finished(digest, total, False)
        else:
            self._advanced(digest, done, total)

    def message(self, text: str) -> None:
        """A line of text for the user (between the bars on a TTY)."""
        with self._lock:
            if not self._closed:
                try:
                    self._message(text)
                except (OSError, ValueError):
                    self._closed = True

    def close(self) -> None:
        """End the display (idempotent); later calls render nothing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                try:
                    self._close()
                except (OSError, ValueError):
                    pass

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the renderers' hooks, called with the lock held --------------------
    def _started(self, digest: str, total: int) -> None:
        pass

    def _advanced(self, digest: str, done: int, total: int) -> None:
        pass

    def _finished(self, digest: str, total: int, skipped: bool) -> None:
        pass

    def _message(self, text: str) -> None:
        pass

    def _close(self) -> None:
        pass


class _Lines(Reporter):
    """One line per finished blob, for logs and pipes."""

    def __init__(self, stream: IO[str], verb: str, noun: str) -> None:
        super().__init__()
        self.stream = stream
        self.verb = verb
        self.noun = noun

    def _write(self, line: str) -> None:
        self.stream.write(line + "\n")
        self.stream.flush()

    def _finished(self, digest: str, total: int, skipped: bool) -> None:
        if skipped and not self.show_skipped:
            return
        if skipped:
            self._write(f"Skipped {self.noun} {short_digest(digest)} (already present)")
        else:
            self._write(f"{self.verb} {self.noun} {short_digest(digest)} {human_size(total)}")

    def _message(self, text: str) -> None:
        self._write(text)


class _Tty(Reporter):
    """A bar per blob with bytes, total and rate (``rich``, loaded here only)."""

    def __init__(self, stream: IO[str], verb: str, noun: str) -> None:
        super().__init__()
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        class Rate(ProgressColumn):  # rich's TransferSpeedColumn counts in MB, the bars in MiB
            def render(self, task: Any) -> Text:
                if task.finished:  # the blob's average: rich's estimate lags for short transfers
                    took = task.finished_time
                    speed = task.completed / took if took and task.fields.get("moved") else None
                else:
                    speed = task.speed
                return Text("" if speed is None else f"{human_size(int(speed))}/s", style="progress.data.speed")

        self.verb = verb
        self.noun = noun
        self.console = Console(file=stream, force_terminal=True, markup=False, highlight=False,
                               emoji=False)
        # no redirect of sys.stdout/stderr: other threads of the caller's program write there
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                             Rate(), console=self.console, redirect_stdout=False,
                             redirect_stderr=False, refresh_per_second=8)
        self.tasks: dict[str, Any] = {}
        self._started_live = False

    def _live(self) -> None:
        if not self._started_live:
            self._started_live = True
            self.bars.start()

    def _task(self, digest: str, total: int) -> Any:
        task = self.tasks.get(digest)
        if task is None:
            self._live()
            task = self.tasks[digest] = self.bars.add_task(f"{self.noun} {short_digest(digest)}", total=total,
                                                           moved=True)
        return task

    def _started(self, digest: str, total: int) -> None:
        if digest in self.tasks:  # moving again: the same bar from 0
            self.bars.reset(self.tasks[digest], total=total, completed=0)
        else:
            self._task(digest, total)

    def _advanced(self, digest: str, done: int, total: int) -> None:
        self.bars.update(self._task(digest, total), completed=done, total=total)

    def _finished(self, digest: str, total: int, skipped: bool) -> None:
        if skipped and not self.show_skipped:
            return
        if skipped:
            self._live()
            if digest in self.tasks:
                self.bars.update(self.tasks[digest], completed=total, total=total)
                return
            self.tasks[digest] = self.bars.add_task(f"{self.noun} {short_digest(digest)} already present",
                                                    total=total, completed=total, moved=False)
            return
        self.bars.update(self._task(digest, total), completed=total, total=total)

    def _message(self, text: str) -> None:
        self.console.print(text)

    def _close(self) -> None:
        if self._started_live:
            self.bars.stop()  # draws the final state


def reporter(mode: str = "auto", stream: IO[str] | None = None, *, verb: str = "Copied",
             noun: str = "blob", skipped: bool = True) -> Reporter:
    """A :class:`Reporter` writing to `stream` (default stderr).

    `mode`: ``"auto"`` (``"tty"`` if the stream is a terminal, else
    ``"lines"``), ``"tty"``, ``"lines"`` or ``"quiet"``.  Lines read
    ``{verb} {noun} sha256:abcdef012345… 2.1 MiB`` and
    ``Skipped {noun} … (already present)`` (unless not `skipped`: then
    only what moved is shown, as ``image run`` wants).
    """
    if mode not in MODES:
        from ocipy.errors import OcipyError

        raise OcipyError(f"progress mode {mode!r} is not one of {', '.join(MODES)}")
    if mode == "quiet":
        return Reporter()
    out = stream if stream is not None else sys.stderr
    if mode == "auto":
        try:
            mode = "tty" if out.isatty() else "lines"
        except (AttributeError, ValueError, OSError):
            mode = "lines"
    made: Reporter = _Tty(out, verb, noun) if mode == "tty" else _Lines(out, verb, noun)
    made.show_skipped = skipped
    return made
