"""`run` in the foreground with process.terminal and no --console-socket.

Like runc, the runtime then receives the pty master itself and copies
between it and its own stdin/stdout until the container's side closes.
"""

from __future__ import annotations

import os
import socket


class ConsoleProxy:
    def __init__(self) -> None:
        self._ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        self.child_fd = theirs.detach()
        self.master = -1
        self._saved_tty: list | None = None  # type: ignore[type-arg]

    def receive_master(self) -> None:
        from ocipy.errors import OcipyError

        os.close(self.child_fd)
        _, fds, _, _ = socket.recv_fds(self._ours, 64, 1)
        if not fds:
            raise OcipyError("the container sent no terminal")
        self.master = fds[0]
        self._copy_window_size()

    def _copy_window_size(self) -> None:
        import fcntl
        import termios

        if os.isatty(0):
            size = fcntl.ioctl(0, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)

    def copy_until_exit(self, pid: int) -> None:
        import select
        import termios
        import tty

        if os.isatty(0):
            self._saved_tty = termios.tcgetattr(0)
            tty.setraw(0, termios.TCSANOW)  # TCSAFLUSH would drop what the user typed already
        inputs = [self.master, 0]
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    data = b""
                if not data:
                    return  # EIO: every holder of the pty slave has gone
                os.write(1, data)
            if 0 in ready:
                data = os.read(0, 65536)
                if not data:
                    inputs.remove(0)
                    os.write(self.master, b"\x04")  # EOF on our stdin: ^D to the container
                else:
                    os.write(self.master, data)

    def close(self) -> None:
        import termios

        if self._saved_tty is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved_tty)
        if self.master >= 0:
            os.close(self.master)
        self._ours.close()
