"""The lifecycle table (runtime/lifecycle.py): every state x every operation.

The expected matrix below is written out by hand from runtime.md ("Lifecycle",
"Operations") and runc 1.1.5's behaviour (libcontainer's state_linux.go and
the commands' status checks), not derived from the module under test.
"""

from __future__ import annotations

import pytest

from ocipy.errors import InvalidState, NotRunning
from ocipy.runtime import lifecycle as lc

S = lc.STATES
# rows: operation; columns: creating, created, running, paused, stopped
EXPECTED = {
    # runtime.md "Start": "Attempting to start a container that is not created MUST have no
    # effect on the container and MUST generate an error."
    lc.START:        (False, True,  False, False, False),
    # runc exec: refused in a stopped container, and in a paused one without --ignore-paused
    lc.EXEC:         (False, True,  True,  False, False),
    lc.EXEC_PAUSED:  (False, True,  True,  True,  False),
    # runtime.md "Kill": "Attempting to send a signal to a container that is neither created nor
    # running MUST have no effect on the container and MUST generate an error."  runc also
    # signals a paused one (paused is runc's own state; it thaws for SIGKILL).
    lc.KILL:         (False, True,  True,  True,  False),
    # runc 1.1.5 Signal(all=true) signals whatever is left in the cgroup, also when stopped
    lc.KILL_ALL:     (False, True,  True,  True,  True),
    # runc pause: running or created; resume: paused only
    lc.PAUSE:        (False, True,  True,  False, False),
    lc.RESUME:       (False, False, False, True,  False),
    # runc update: anything with processes
    lc.UPDATE:       (False, True,  True,  True,  False),
    # runtime.md "Delete": "Attempting to delete a container that is not stopped MUST have no
    # effect on the container and MUST generate an error."  runc deletes a created container
    # (killing it) and the remains of a dead create without -f: see docs/compat.md.
    lc.DELETE:       (True,  True,  False, False, True),
    lc.DELETE_FORCE: (True,  True,  True,  True,  True),
    lc.INSPECT:      (False, True,  True,  True,  False),
}  # fmt: skip


def test_the_states_are_the_specs_plus_paused():
    # runtime.md "State": status "MAY be one of: creating, created, running, stopped";
    # "Additional values MAY be defined by the runtime, however, they MUST be used to
    # represent new runtime states not defined above."
    assert set(lc.SPEC_STATES) == {"creating", "created", "running", "stopped"}
    assert set(lc.STATES) - set(lc.SPEC_STATES) == {"paused"}


def test_every_operation_is_in_the_table():
    assert set(lc.OPERATIONS) == set(EXPECTED)


@pytest.mark.parametrize("operation", sorted(EXPECTED))
@pytest.mark.parametrize("status", S)
def test_every_state_and_operation(operation, status):
    expected = EXPECTED[operation][S.index(status)]
    assert lc.allowed(operation, status) is expected, f"{operation} in {status}"


@pytest.mark.parametrize("status", S)
def test_the_can_functions_ask_the_table(status):
    row = {op: EXPECTED[op][S.index(status)] for op in EXPECTED}
    assert lc.can_start(status) is row[lc.START]
    assert lc.can_exec(status) is row[lc.EXEC]
    assert lc.can_exec(status, ignore_paused=True) is row[lc.EXEC_PAUSED]
    assert lc.can_kill(status) is row[lc.KILL]
    assert lc.can_kill(status, all_processes=True) is row[lc.KILL_ALL]
    assert lc.can_pause(status) is row[lc.PAUSE]
    assert lc.can_resume(status) is row[lc.RESUME]
    assert lc.can_update(status) is row[lc.UPDATE]
    assert lc.can_delete(status) is row[lc.DELETE]
    assert lc.can_delete(status, force=True) is row[lc.DELETE_FORCE]
    assert lc.can_inspect(status) is row[lc.INSPECT]


def test_the_spec_states_follow_the_specs_rules():
    # The MUSTs of runtime.md, restated on the spec's own states.
    for status in lc.SPEC_STATES:
        assert lc.can_start(status) == (status == "created")
        assert lc.can_kill(status) == (status in ("created", "running"))
    # delete -f may always clean up; plain delete never removes a running container
    assert all(lc.can_delete(s, force=True) for s in S)
    assert not lc.can_delete("running") and not lc.can_delete("paused")


@pytest.mark.parametrize("operation", sorted(EXPECTED))
@pytest.mark.parametrize("status", S)
def test_transitions(operation, status):
    expected_next = {
        (lc.START, "created"): "running",
        (lc.PAUSE, "created"): "paused",
        (lc.PAUSE, "running"): "paused",
        (lc.RESUME, "paused"): "running",
    }
    if not lc.allowed(operation, status):
        with pytest.raises(ValueError):
            lc.after(operation, status)
    elif operation in (lc.DELETE, lc.DELETE_FORCE):
        assert lc.after(operation, status) == lc.GONE
    else:
        assert lc.after(operation, status) == expected_next.get((operation, status), status)


def test_a_container_paused_before_start_resumes_as_created():
    # runc 1.1.5: `pause` of a created container reports paused; `resume` gives created back
    assert lc.after(lc.PAUSE, "created") == "paused"
    assert lc.after(lc.RESUME, "paused", started=False) == "created"
    assert not lc.can_start("paused") and not lc.can_delete("paused")


def test_refusals_use_runcs_wording():
    with pytest.raises(InvalidState, match="cannot start a container that has stopped"):
        lc.refuse_start("c", "stopped")
    with pytest.raises(InvalidState, match="cannot start an already running container"):
        lc.refuse_start("c", "running")
    with pytest.raises(InvalidState, match="cannot exec in a paused container"):
        lc.refuse_exec("c", "paused")
    with pytest.raises(InvalidState, match="cannot exec in a stopped container"):
        lc.refuse_exec("c", "stopped")
    with pytest.raises(NotRunning, match="container not running"):
        lc.refuse_kill("c", "stopped")
    with pytest.raises(InvalidState, match="container not paused"):
        lc.refuse_resume("c", "running")
    with pytest.raises(InvalidState, match="cannot delete container c that is not stopped: running"):
        lc.refuse_delete("c", "running")
    # allowed operations do not raise
    lc.refuse_start("c", "created")
    lc.refuse_kill("c", "stopped", all_processes=True)
    lc.refuse_delete("c", "running", force=True)


def test_pid_is_reported_while_the_init_lives():
    # runtime.md "State": pid is "REQUIRED when status is created or running on Linux"
    assert {s for s in S if lc.is_alive(s)} == {"created", "running", "paused"}
    assert not lc.must_kill_before_delete("stopped") and all(lc.must_kill_before_delete(s) for s in S[:4])


def test_store_uses_the_lifecycle_states():
    from ocipy.runtime import store

    assert (store.CREATING, store.CREATED, store.RUNNING, store.PAUSED, store.STOPPED) == lc.STATES
