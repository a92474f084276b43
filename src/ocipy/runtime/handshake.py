"""The handshake between the runtime, the bootstrap and the container's init.

Every message is one text line on a pair of pipes made by the runtime (the
parent) before it forks: ``to_child`` (parent writes, children read) and
``from_child`` (children write, parent reads).  The children inherit both
ends they need; the parent keeps the other two.  EOF on a pipe means that
its writer is gone: a child reading EOF exits quietly (the parent died); the
parent reading EOF before "ready" reports that the init exited early.

create, bootstrap path (a user or time namespace, or a namespace to join):

====  ===========  ==========  =======================  ==================================
step  sender       fd          message                  when / what the receiver does
====  ===========  ==========  =======================  ==================================
1     runtime      to_child    ``go``                   the bootstrap is in its cgroups
2     bootstrap    from_child  ``userns``               after unshare(CLONE_NEWUSER)
3     runtime      to_child    ``mapped``               uid_map/gid_map written
4     bootstrap    from_child  ``pid N``                the init is forked (pid N, host)
5     runtime      to_child    ``init-go``              pid recorded in state.json
6     init         from_child  ``hooks``                mounts done, before pivot_root
7     runtime      to_child    ``hooks-done``           prestart + createRuntime hooks ran
8     init         from_child  ``seccomp N``            filter loaded; its notify fd is N
9     runtime      to_child    ``seccomp-done``         fd copied (pidfd_getfd), sent to
                                                        linux.seccomp.listenerPath
10    init         from_child  ``ready``                init done; waits on the exec fifo
====  ===========  ==========  =======================  ==================================

create, direct path (`init.clone_init`: no bootstrap): the init is cloned
into its namespaces; the runtime sends ``init-go`` (5) once the cgroup
directories and device rules exist, and steps 6-10 follow as above.  Steps
2-3 happen only with a new user namespace; 6-7 only with prestart or
createRuntime hooks; 8-9 only with SCMP_ACT_NOTIFY rules.

exec (runtime/exec.py): ``go`` (1), ``pid N`` (4, from the bootstrap), then
``seccomp N``/``seccomp-done`` (8-9) from the process; no ``ready``: its
``from_child`` end is close-on-exec, so EOF tells the parent that execve
succeeded.

Any child may send ``error MESSAGE`` (one line) instead of its next message;
the runtime then fails the operation with MESSAGE and undoes what it made.

The message words are the constants of `Msg` (a plain class: ``enum`` costs
~1 ms of every command's start-up); `Channel` carries them; `FdOwner` owns
the pipe ends and every other fd made for the children, so that an error
path closes them all exactly once.
"""

from __future__ import annotations

import os


class Msg:
    """The message words of the handshake (the first word of each line)."""

    GO = "go"
    USERNS = "userns"
    MAPPED = "mapped"
    PID = "pid"
    INIT_GO = "init-go"
    HOOKS = "hooks"
    HOOKS_DONE = "hooks-done"
    SECCOMP = "seccomp"
    SECCOMP_DONE = "seccomp-done"
    READY = "ready"
    ERROR = "error"

    ALL = (GO, USERNS, MAPPED, PID, INIT_GO, HOOKS, HOOKS_DONE, SECCOMP, SECCOMP_DONE, READY, ERROR)


class FdOwner:
    """Owns file descriptors until they are closed or handed on (an ExitStack for fds).

    ``contextlib.ExitStack`` would cost ~2.5 ms of start-up (collections,
    functools); this is all the runtime needs of it.
    """

    def __init__(self) -> None:
        self._fds: list[int] = []

    def own(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def close(self, fd: int) -> None:
        """Close one owned fd now (it is no longer owned)."""
        if fd in self._fds:
            self._fds.remove(fd)
            try:
                os.close(fd)
            except OSError:
                pass

    def release(self, fd: int) -> int:
        """Stop owning `fd` without closing it (someone else closes it)."""
        if fd in self._fds:
            self._fds.remove(fd)
        return fd

    def close_all(self) -> None:
        fds, self._fds = self._fds, []
        for fd in reversed(fds):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> FdOwner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close_all()


class Channel:
    """Line messages over a pair of pipe ends (read `rfd`, write `wfd`)."""

    def __init__(self, rfd: int, wfd: int) -> None:
        self.rfd, self.wfd = rfd, wfd
        self._buf = b""

    def send(self, word: str, arg: object = None, strict: bool = False) -> None:
        message = word if arg is None else f"{word} {arg}"
        try:
            os.write(self.wfd, (message.replace("\n", " ") + "\n").encode())
        except BrokenPipeError:
            if strict:
                raise
            # The other side is gone: its last words (or EOF) are what recv reads next.

    def recv(self) -> tuple[str, str]:
        """The next message as (word, rest); EOFError when the writer is gone."""
        while b"\n" not in self._buf:
            chunk = os.read(self.rfd, 4096)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        word, _, rest = line.decode(errors="replace").partition(" ")
        return word, rest

    def expect(self, word: str) -> str:
        """A child waits for `word`; any other message or EOF ends it quietly
        (the parent failed or went away and cleans up)."""
        try:
            got, rest = self.recv()
        except EOFError:
            os._exit(1)
        if got != word:
            os._exit(1)
        return rest

    def close(self) -> None:
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def pipes(owner: FdOwner) -> tuple[Channel, Channel]:
    """Two pipes: (the parent's channel, the children's channel), all four ends owned."""
    to_child_r, to_child_w = os.pipe()
    owner.own(to_child_r)
    owner.own(to_child_w)
    from_child_r, from_child_w = os.pipe()
    owner.own(from_child_r)
    owner.own(from_child_w)
    return Channel(from_child_r, to_child_w), Channel(to_child_r, from_child_w)
