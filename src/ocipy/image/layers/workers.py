"""Worker threads that create leaf entries (files, symlinks, nodes) during an unpack."""

from __future__ import annotations

import os
from typing import Any


class Workers:
    """Threads that create leaf entries (files, symlinks, nodes) in parallel.

    Creating an inode is the expensive part of an unpack and the kernel does it
    in parallel for different directories, so tasks are spread over the
    workers by parent directory.  Only the main thread resolves paths, removes
    anything, or closes cached directory fds, and it waits for every pending
    task (:meth:`barrier`) before it does.
    """

    def __init__(self, count: int) -> None:
        import queue
        import threading

        self.queues: list[Any] = [queue.SimpleQueue() for _ in range(count)]
        self.error: tuple[str, BaseException] | None = None
        self.pending_bytes = 0
        self.dirty = False
        self._assign: dict[str, Any] = {}
        self.threads = [threading.Thread(target=self._run, args=(q,), daemon=True,
                                         name=f"ocipy-unpack-{i}") for i, q in enumerate(self.queues)]
        for t in self.threads:
            t.start()

    def _run(self, q: Any) -> None:
        while True:
            task = q.get()
            if task is None:
                return
            if task.__class__ is not tuple:
                task.set()  # a barrier's Event
                continue
            if self.error is not None:
                continue
            func, args, name = task
            try:
                func(*args)
            except BaseException as e:  # reported by the main thread at the next barrier
                if self.error is None:
                    self.error = (name, e)

    def submit(self, key: str, func: Any, args: tuple[Any, ...], name: str, nbytes: int = 0) -> None:
        self.dirty = True
        q = self._assign.get(key)
        if q is None:
            # directories go to the workers in turn, as they first appear (deterministic)
            q = self._assign[key] = self.queues[len(self._assign) % len(self.queues)]
        q.put((func, args, name))
        if nbytes:
            self.pending_bytes += nbytes
            if self.pending_bytes > (64 << 20):
                self.barrier()

    def barrier(self) -> tuple[str, BaseException] | None:
        """Wait until every submitted task is done; return the first error, if any."""
        if self.dirty:
            import threading

            events = []
            for q in self.queues:
                ev = threading.Event()
                q.put(ev)
                events.append(ev)
            for ev in events:
                ev.wait()
            self.dirty = False
            self.pending_bytes = 0
        return self.error

    def stop(self) -> None:
        for q in self.queues:
            q.put(None)
        for t in self.threads:
            t.join()


def worker_count() -> int:
    env = os.environ.get("OCIPY_UNPACK_THREADS")
    if env and env.isdigit():
        return int(env)
    return min(4, len(os.sched_getaffinity(0)))
