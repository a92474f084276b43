"""The progress renderers (ocipy.content.progress): lines, quiet, and bars on a real pseudo-terminal."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import threading
import time

import pytest

from ocipy.content.progress import BlobProgress, Reporter, human_size, reporter, short_digest
from ocipy.errors import OcipyError

A = "sha256:" + "a1" * 32
B = "sha256:" + "b2" * 32
C = "sha256:" + "c3" * 32


def _feed(r: Reporter) -> None:
    """Two layers copied, one already present (C), then A moved again (a second copy)."""
    r(A, 0, 2_200_000)
    r(A, 1_000_000, 2_200_000)
    r(C, 77, 77)  # first call is the last: skipped
    r(B, 0, 512)
    r(A, 2_200_000, 2_200_000)
    r(B, 512, 512)
    r(B, 512, 512)  # B again, in one call: a second copy found it there
    r(A, 0, 2_200_000)  # moving again: a new transfer
    r(A, 2_200_000, 2_200_000)


def test_lines_one_line_per_finished_blob_and_nothing_else() -> None:
    out = io.StringIO()
    with reporter("lines", out) as r:
        _feed(r)
        r.message("Writing manifest")
    assert out.getvalue() == (
        "Skipped blob sha256:c3c3c3c3c3c3… (already present)\n"
        "Copied blob sha256:a1a1a1a1a1a1… 2.1 MiB\n"
        "Copied blob sha256:b2b2b2b2b2b2… 512 B\n"
        "Skipped blob sha256:b2b2b2b2b2b2… (already present)\n"
        "Copied blob sha256:a1a1a1a1a1a1… 2.1 MiB\n"
        "Writing manifest\n")


def test_lines_words_and_auto_off_a_terminal() -> None:
    out = io.StringIO()  # not a terminal: auto is lines
    r = reporter("auto", out, verb="Unpacked", noun="layer")
    r(A, 0, 10)
    r(A, 10, 10)
    r.close()
    r(B, 5, 5)  # after close: nothing
    assert out.getvalue() == "Unpacked layer sha256:a1a1a1a1a1a1… 10 B\n"


def test_quiet_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with reporter("quiet") as r:
        _feed(r)
        r.message("hello")
    got = capsys.readouterr()
    assert got.out == got.err == ""


def test_bad_mode_is_an_error() -> None:
    with pytest.raises(OcipyError, match="progress mode 'bars'"):
        reporter("bars")


def test_a_broken_stream_does_not_fail_the_copy() -> None:
    out = io.StringIO()
    out.close()
    with reporter("lines", out) as r:
        r(A, 3, 3)  # ValueError inside: swallowed

    class Pipe(io.StringIO):  # the reader went away after the first line: EPIPE
        def write(self, text: str) -> int:
            if self.getvalue():
                raise BrokenPipeError(32, "Broken pipe")
            return super().write(text)

    pipe = Pipe()
    with reporter("lines", pipe) as r:
        r(A, 3, 3)
        r(B, 4, 4)  # raises inside: the reporter goes quiet
        r.message("more")
        r(C, 5, 5)
    assert pipe.getvalue() == "Skipped blob sha256:a1a1a1a1a1a1… (already present)\n"


def test_units_and_digests() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 2_200_000, 5 << 30)] == \
        ["0 B", "1023 B", "1.0 KiB", "2.1 MiB", "5.0 GiB"]
    assert short_digest(A) == "sha256:a1a1a1a1a1a1…"
    assert short_digest("sha256:abc") == "sha256:abc"


def test_blob_progress_keeps_the_promise() -> None:
    calls: list[tuple[str, int, int]] = []
    bar = BlobProgress(lambda d, done, total: calls.append((d, done, total)), A, 100)
    bar.start()
    bar.add(60)
    bar.add(60)  # a download that started over counts past the total: held below it
    bar.finish()
    bar.finish()
    assert calls == [(A, 0, 100), (A, 60, 100), (A, 99, 100), (A, 100, 100)]
    skipped: list[tuple[str, int, int]] = []
    BlobProgress(lambda *a: skipped.append(a), B, 7).skipped()
    assert skipped == [(B, 7, 7)]
    BlobProgress(None, C, 5).add(5)  # no callback: nothing to call
    empty: list[tuple[str, int, int]] = []
    bar = BlobProgress(lambda *a: empty.append(a), C, 0)
    bar.start()
    bar.add(0)
    bar.finish()
    assert empty == [(C, 0, 0)]  # one call, as the promise says


def test_thread_safe_under_parallel_blobs() -> None:
    out = io.StringIO()
    digests = [f"sha256:{i:064x}" for i in range(40)]
    with reporter("lines", out) as r:
        def worker(d: str) -> None:
            for n in range(0, 1001, 50):
                r(d, n, 1000)

        threads = [threading.Thread(target=worker, args=(d,)) for d in digests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    lines = out.getvalue().splitlines()
    assert sorted(lines) == sorted(f"Copied blob {short_digest(d)} 1000 B" for d in digests)


def _on_pty(mode: str) -> bytes:
    """Drive a reporter on a real pseudo-terminal; what the terminal received."""
    master, slave = pty.openpty()
    got = bytearray()

    def read() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            got.extend(data)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    stream = os.fdopen(slave, "w", encoding="utf-8")
    try:
        with reporter(mode, stream) as r:
            assert type(r).__name__ == "_Tty"
            r(A, 0, 2 << 20)
            r(A, 1 << 20, 2 << 20)
            time.sleep(0.3)  # a refresh or two: the rate is measured
            r(A, 2 << 20, 2 << 20)
            r(B, 0, 3 << 10)
            r(B, 3 << 10, 3 << 10)
            r(C, 77, 77)
            r.message("Writing manifest")
    finally:
        stream.close()
        deadline = time.monotonic() + 5
        while reader.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
            if not got.endswith(b"\x1b[?25h"):  # the cursor comes back last
                continue
            break
        os.close(master)
    return bytes(got)


@pytest.mark.parametrize("mode", ["tty", "auto"])
def test_tty_draws_a_bar_per_layer_with_bytes_and_rate(mode: str) -> None:
    screen = _on_pty(mode).decode("utf-8", "replace")
    assert "\x1b[" in screen  # drawn with terminal control sequences
    assert "blob sha256:a1a1a1a1a1a1…" in screen and "2.0/2.0 MiB" in screen
    assert "blob sha256:b2b2b2b2b2b2…" in screen and "3.0/3.0 KiB" in screen
    assert "sha256:c3c3c3c3c3c3… already present" in screen
    assert "MiB/s" in screen or "KiB/s" in screen  # the rate of A
    assert "Writing manifest" in screen


def test_rich_is_loaded_only_for_a_terminal() -> None:
    code = ("import io, sys\n"
            "from ocipy.content.progress import reporter\n"
            "from ocipy import api_image, api_registry\n"
            "import ocipy.content.copy, ocipy.image.unpack\n"
            "r = reporter('auto', io.StringIO()); r('sha256:' + 'a' * 64, 1, 1); r.close()\n"
            "reporter('quiet').close()\n"
            "assert 'rich' not in sys.modules, 'rich imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_runtime_hot_path_never_loads_progress_or_rich(tmp_path: object) -> None:
    """create/start/state/kill/delete/exec: no rich, no progress module (start-up time)."""
    for argv in (["state", "nosuch"], ["kill", "nosuch"], ["delete", "nosuch"], ["start", "nosuch"],
                 ["exec", "nosuch", "true"], ["create", "-b", "/nonexistent", "nosuch"]):
        proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ocipy", "--root", str(tmp_path), *argv],
                              capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
        assert proc.returncode != 0 and "import time:" in proc.stderr, proc.stderr
        loaded = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
        assert not {m for m in loaded if m.startswith("rich") or m in ("ocipy.content.progress", "ocipy.api_image")}, argv
