"""The container lifecycle as data: the states and what each operation may do in each.

The states are runtime.md's ("State": ``creating``, ``created``, ``running``,
``stopped``) plus ``paused``, which runc defines and the spec allows ("Additional
values MAY be defined by the runtime, however, they MUST be used to represent
new runtime states not defined above").  A status is never stored; it is
derived from the init process, the exec fifo and the freezer (see store.py).

:data:`ALLOWED` is the whole table: for each operation, the states it may be
applied in.  Everything else asks it through the ``can_*`` functions; the
``refuse_*`` functions raise runc's error for a refused operation, so every
caller words a refusal the same way.

===============  ========  =======  =======  ======  =======
operation        creating  created  running  paused  stopped
===============  ========  =======  =======  ======  =======
start                      yes
exec                       yes      yes      (1)
kill                       yes      yes      yes
kill --all                 yes      yes      yes     yes (2)
pause                      yes      yes
resume                                       yes (5)
update                     yes      yes      yes
delete           yes (4)   yes (3)                   yes
delete -f        yes       yes      yes      yes     yes
ps/stats/events            yes      yes      yes
===============  ========  =======  =======  ======  =======

1. only with ``--ignore-paused`` (runc 1.1 refuses exec into a paused container).
2. runc 1.1.5 (libcontainer ``Signal`` with ``all``): nothing is left to
   signal, so it has no effect, and the command succeeds (kill.bats "kill
   detached busybox" relies on it).  ``--all`` is runc's extension; the spec's
   ``kill`` operation (signal the container process) refuses a stopped container.
3. runc kills and deletes a created container without ``-f``; containerd's
   shim deletes a created, never started task that way.  runtime.md "Delete"
   says "Attempting to delete a container that is not stopped MUST have no
   effect on the container and MUST generate an error": see docs/compat.md.
4. ``creating`` is a create still in progress, or one that died (killed, or
   the machine went down).  A create holds the container's lock until it
   finishes, and delete takes that lock first: a delete that sees
   ``creating`` is cleaning up after a dead create (runc removes such a
   directory without ``-f`` too).  Nothing else may touch it.
5. ``paused`` comes before ``created``: a container paused before ``start``
   is paused (start and delete refuse it), and resumes as ``created`` (runc).
"""

from __future__ import annotations

CREATING, CREATED, RUNNING, PAUSED, STOPPED = "creating", "created", "running", "paused", "stopped"
STATES = (CREATING, CREATED, RUNNING, PAUSED, STOPPED)

# runtime.md "State": "status ... MAY be one of: creating, created, running, stopped"
SPEC_STATES = (CREATING, CREATED, RUNNING, STOPPED)

START, EXEC, EXEC_PAUSED, KILL, KILL_ALL = "start", "exec", "exec --ignore-paused", "kill", "kill --all"
PAUSE, RESUME, UPDATE, DELETE, DELETE_FORCE = "pause", "resume", "update", "delete", "delete -f"
INSPECT = "ps/stats/events"

# operation -> the states it may be applied in
ALLOWED: dict[str, frozenset[str]] = {
    START: frozenset({CREATED}),
    EXEC: frozenset({CREATED, RUNNING}),
    EXEC_PAUSED: frozenset({CREATED, RUNNING, PAUSED}),
    KILL: frozenset({CREATED, RUNNING, PAUSED}),
    KILL_ALL: frozenset({CREATED, RUNNING, PAUSED, STOPPED}),
    PAUSE: frozenset({CREATED, RUNNING}),
    RESUME: frozenset({PAUSED}),
    UPDATE: frozenset({CREATED, RUNNING, PAUSED}),
    DELETE: frozenset({CREATING, CREATED, STOPPED}),
    DELETE_FORCE: frozenset(STATES),
    INSPECT: frozenset({CREATED, RUNNING, PAUSED}),
}
OPERATIONS = tuple(ALLOWED)

# What a successful operation leads to (the state the next `state` reports).
# Operations that leave the state as it was are not listed.
NEXT: dict[tuple[str, str], str] = {
    (START, CREATED): RUNNING,
    (PAUSE, CREATED): PAUSED,
    (PAUSE, RUNNING): PAUSED,
    # A container paused before `start` resumes as created (the status is derived
    # again from the exec fifo, as runc derives it): see after().
    (RESUME, PAUSED): RUNNING,
}

# delete (with or without -f) removes the container: there is no state after it.
GONE = "deleted"


def allowed(operation: str, status: str) -> bool:
    """May `operation` be applied to a container in `status`?"""
    return status in ALLOWED[operation]


def after(operation: str, status: str, started: bool = True) -> str:
    """The status a successful `operation` from `status` leads to (`started`: whether
    the container had been started; it decides what `resume` leads back to)."""
    if not allowed(operation, status):
        raise ValueError(f"{operation} is not allowed in state {status}")
    if operation in (DELETE, DELETE_FORCE):
        return GONE
    if operation == RESUME and not started:
        return CREATED
    return NEXT.get((operation, status), status)


def can_start(status: str) -> bool:
    return allowed(START, status)


def can_exec(status: str, ignore_paused: bool = False) -> bool:
    return allowed(EXEC_PAUSED if ignore_paused else EXEC, status)


def can_kill(status: str, all_processes: bool = False) -> bool:
    return allowed(KILL_ALL if all_processes else KILL, status)


def can_pause(status: str) -> bool:
    return allowed(PAUSE, status)


def can_resume(status: str) -> bool:
    return allowed(RESUME, status)


def can_update(status: str) -> bool:
    return allowed(UPDATE, status)


def can_delete(status: str, force: bool = False) -> bool:
    return allowed(DELETE_FORCE if force else DELETE, status)


def can_inspect(status: str) -> bool:
    """ps, stats and events need a container with processes."""
    return allowed(INSPECT, status)


# The states in which the container's init is alive (its pid is reported in `state`):
# runtime.md "State": pid is "REQUIRED when status is created or running on Linux".
ALIVE = frozenset({CREATED, RUNNING, PAUSED})


def is_alive(status: str) -> bool:
    return status in ALIVE


def must_kill_before_delete(status: str) -> bool:
    """delete of a container whose init may still be alive kills it first."""
    return status != STOPPED


# --- runc's wording of a refusal (engines and scripts grep for these) ----------


def refuse_start(container_id: str, status: str) -> None:
    """Raise runc's error when `start` is not allowed in `status`."""
    from ocipy.errors import InvalidState

    if can_start(status):
        return
    if status == STOPPED:
        raise InvalidState("cannot start a container that has stopped")
    if status == CREATING:
        raise InvalidState("cannot start a container that is still being created")
    raise InvalidState(f"cannot start an already {status} container")


def refuse_exec(container_id: str, status: str, ignore_paused: bool = False) -> None:
    from ocipy.errors import InvalidState, NotRunning

    if can_exec(status, ignore_paused):
        return
    if status == PAUSED:
        raise InvalidState("cannot exec in a paused container (use --ignore-paused to override)")
    if status == STOPPED:
        raise InvalidState("cannot exec in a stopped container")
    raise NotRunning(container_id)


def refuse_kill(container_id: str, status: str, all_processes: bool = False) -> None:
    from ocipy.errors import NotRunning

    if not can_kill(status, all_processes):
        raise NotRunning(container_id)


def refuse_pause(container_id: str, status: str) -> None:
    from ocipy.errors import NotRunning

    if not can_pause(status):
        raise NotRunning(container_id)


def refuse_resume(container_id: str, status: str) -> None:
    from ocipy.errors import InvalidState

    if not can_resume(status):
        raise InvalidState(f"container not paused: {container_id}")


def refuse_update(container_id: str, status: str) -> None:
    from ocipy.errors import NotRunning

    if not can_update(status):
        raise NotRunning(container_id)


def refuse_delete(container_id: str, status: str, force: bool = False) -> None:
    from ocipy.errors import InvalidState

    if not can_delete(status, force):
        raise InvalidState(f"cannot delete container {container_id} that is not stopped: {status}")
