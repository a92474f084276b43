"""Control groups: detect v1 / v2 / hybrid, place a container, set its limits.

The runtime core calls :func:`manager` (a new container) or :func:`from_state`
(one saved in state.json) and then the :class:`Manager` methods.

Layout (like runc's cgroupfs driver):

* v1 and hybrid: one directory per mounted v1 hierarchy, keyed by controller
  name in :meth:`Manager.paths` (``cpu``, ``cpuacct``, ``memory``, ...,
  ``name=systemd``); in hybrid mode the cgroup2 directory too, under key ``""``
  (it carries the controllers that only v2 has, e.g. ``hugetlb`` here).
* v2: one directory, key ``""``.

``linux.cgroupsPath`` (config-linux.md "Cgroups Path"): an absolute path is
taken relative to each hierarchy's mount point (MUST); a relative path is
taken relative to the runtime's own cgroup in each hierarchy (runc does the
same); unset means ``<container id>`` relative to the runtime's own cgroup,
which is ``/<id>`` when the runtime runs in the root cgroup.

Import cost matters (``state`` imports this to tell "paused"): only ``os`` at
module level; everything else is imported where it is used.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # importing typing costs ~3 ms of the CLI's start-up
if TYPE_CHECKING:
    from typing import Any

    from ocipy.spec.resources import Resources

DEFAULT_ROOT = "/sys/fs/cgroup"

V1_CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
                  "net_cls", "net_prio", "perf_event", "hugetlb", "rdma", "misc")
# v1 controller name -> its cgroup v2 name (None: no v2 equivalent)
V2_NAME: dict[str, str | None] = {"cpu": "cpu", "cpuset": "cpuset", "memory": "memory", "pids": "pids",
                                  "blkio": "io", "hugetlb": "hugetlb", "rdma": "rdma", "misc": "misc",
                                  "net_cls": None, "net_prio": None}
# controller -> the linux.resources field that needs it (for error messages)
FIELD = {"memory": "memory", "cpu": "cpu", "cpuset": "cpu.cpus", "pids": "pids", "blkio": "blockIO",
         "hugetlb": "hugepageLimits", "net_cls": "network.classID", "net_prio": "network.priorities",
         "rdma": "rdma", "devices": "devices"}


class Layout:
    """Which cgroup hierarchies are mounted under `root`."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.v1: dict[str, str] = {}   # controller -> mount point
        self.unified: str | None = None
        self.v2_controllers: set[str] = set()
        self.mode = "v1"

    @classmethod
    def detect(cls, root: str = DEFAULT_ROOT) -> Layout:
        from ocipy.errors import OcipyError

        layout = cls(root)
        if os.path.exists(os.path.join(root, "cgroup.controllers")):
            layout.unified = root
        else:
            try:
                entries = sorted(os.scandir(root), key=lambda e: e.name)
            except OSError as e:
                raise OcipyError(f"cgroups: cannot read {root}: {e.strerror}") from None
            for entry in entries:
                if entry.is_symlink() or not entry.is_dir():
                    continue
                if os.path.exists(os.path.join(entry.path, "cgroup.controllers")):
                    layout.unified = entry.path
                elif os.path.exists(os.path.join(entry.path, "cgroup.procs")):
                    for name in entry.name.split(","):
                        key = name if name in V1_CONTROLLERS or name.startswith("name=") else f"name={name}"
                        layout.v1.setdefault(key, entry.path)
        if layout.unified:
            text = _read(os.path.join(layout.unified, "cgroup.controllers")) or ""
            layout.v2_controllers = set(text.split())
        if not layout.v1 and not layout.unified:
            raise OcipyError(f"cgroups: no cgroup hierarchy is mounted under {root}")
        layout.mode = "v2" if not layout.v1 else ("hybrid" if layout.unified else "v1")
        return layout

    def available(self, controller: str) -> bool:
        if controller in self.v1:
            return True
        if self.unified is None:
            return False
        if controller == "devices":
            return True  # eBPF on v2
        v2 = V2_NAME.get(controller)
        return v2 is not None and v2 in self.v2_controllers


def detect(root: str = DEFAULT_ROOT) -> str:
    """"v1", "v2" or "hybrid"."""
    return Layout.detect(root).mode


def _read(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError:
        return None


def own_cgroups(layout: Layout, self_cgroup: str | None = None) -> dict[str, str]:
    """The runtime's own cgroup in each hierarchy (controller -> path inside it; "" for v2)."""
    text = self_cgroup if self_cgroup is not None else (_read("/proc/self/cgroup") or "")
    by_controller: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if controllers == "":
            by_controller[""] = path
        for c in controllers.split(","):
            if c:
                by_controller[c] = path
    # Inside a container the hierarchy may be mounted from a sub-directory: strip its root.
    roots: dict[str, str] = {}
    if layout.root == DEFAULT_ROOT:
        for line in (_read("/proc/self/mountinfo") or "").splitlines():
            f = line.split()
            if len(f) > 4 and f[3] != "/":
                roots[f[4].replace("\\040", " ")] = f[3]
    out: dict[str, str] = {}
    mounts = dict(layout.v1)
    if layout.unified:
        mounts[""] = layout.unified
    for c, mnt in mounts.items():
        path = by_controller.get(c, "/")
        mroot = roots.get(mnt)
        if mroot and (path == mroot or path.startswith(mroot + "/")):
            path = path[len(mroot):] or "/"
        out[c] = path
    return out


def controllers_needed(resources: Resources) -> set[str]:
    """The (v1-named) controllers that `resources` sets."""
    need: set[str] = set()
    if resources.memory is not None and resources.memory.any_set():
        need.add("memory")
    cpu = resources.cpu
    if cpu is not None:
        if any(v is not None for v in (cpu.shares, cpu.quota, cpu.period, cpu.burst, cpu.realtime_runtime,
                                       cpu.realtime_period, cpu.idle)):  # fmt: skip
            need.add("cpu")
        if cpu.cpus or cpu.mems:
            need.add("cpuset")
    if resources.pids_limit is not None:
        need.add("pids")
    if resources.block_io is not None and resources.block_io.any_set():
        need.add("blkio")
    if resources.hugepage_limits:
        need.add("hugetlb")
    net = resources.network
    if net is not None:
        if net.class_id is not None:
            need.add("net_cls")
        if net.priorities:
            need.add("net_prio")
    if resources.rdma:
        need.add("rdma")
    return need


def _inner_path(path: str, container_id: str, systemd: bool) -> str:
    """linux.cgroupsPath (checked by the parse) as the path below each hierarchy's base."""
    from ocipy.errors import ConfigError, OcipyError

    if systemd:
        if path and len(path.split(":")) != 3:
            raise ConfigError("linux.cgroupsPath",
                              f"{path!r}: with --systemd-cgroup it must be 'slice:prefix:name'")
        if not os.path.isdir("/run/systemd/system"):
            raise OcipyError("--systemd-cgroup: systemd is not running on this host "
                             "(no /run/systemd/system); run without --systemd-cgroup to use cgroupfs directly")
        raise OcipyError("--systemd-cgroup: the systemd cgroup driver is not supported by ocipy; "
                         "run without --systemd-cgroup")
    if not path:
        path = container_id
    parts = [p for p in path.split("/") if p and p != "."]
    return ("/" if path.startswith("/") else "") + "/".join(parts)


def _invalid_configuration(field: str, problem: str) -> Exception:
    """A ConfigError worded as runc's ("invalid configuration: ..."), which tools grep for."""
    from ocipy.errors import ConfigError

    e = ConfigError(field, problem)
    e.args = (f"invalid configuration: {field}: {problem}",)
    return e


def check_unified(unified: dict[str, str] | None, layout: Layout) -> None:
    """linux.resources.unified on a host that is not all cgroup v2: runc refuses it
    with "invalid configuration: cannot use unified on cgroup v1"; the keys of
    controllers that only the hybrid host's cgroup2 hierarchy has (hugetlb here)
    stay usable (config-linux.md "Unified": the runtime "MUST generate an error
    when the configuration refers to a cgroup controller that is not present")."""
    from ocipy.spec.resources import W

    if not unified or layout.mode == "v2":
        return
    for key in unified:
        controller = key.split(".", 1)[0]
        if layout.unified is None:
            raise _invalid_configuration(f"{W}.unified", "cannot use unified on cgroup v1 "
                                                         "(no cgroup2 hierarchy is mounted)")
        if controller in layout.v1 or (controller != "cgroup" and controller not in layout.v2_controllers):
            raise _invalid_configuration(f"{W}.unified[{key!r}]",
                                         f"cannot use unified on cgroup v1: the {controller} controller "
                                         f"is not in this {layout.mode} host's cgroup2 hierarchy ({layout.unified})")


def manager(resources: Resources, cgroups_path: str, container_id: str, systemd: bool = False, *,
            root: str | None = None, self_cgroup: str | None = None) -> Manager:
    """A Manager for a new container (nothing is created until :meth:`Manager.create`):
    its linux.resources (parsed, spec/config.py) and linux.cgroupsPath.

    `root` and `self_cgroup` (the text of /proc/self/cgroup) are for tests."""
    from ocipy.errors import ConfigError
    from ocipy.linux.cgroups.devices import config_rules
    from ocipy.spec.resources import W

    inner = _inner_path(cgroups_path, container_id, systemd)
    needed = controllers_needed(resources)
    rules = config_rules(resources.devices)
    layout = Layout.detect(root or DEFAULT_ROOT)
    for c in sorted(needed | {"devices"}):
        if not layout.available(c):
            raise ConfigError(f"{W}.{FIELD[c]}", f"the {c} cgroup controller is not available on this host")
    check_unified(resources.unified, layout)
    own = own_cgroups(layout, self_cgroup) if not inner.startswith("/") else {}
    paths: dict[str, str] = {}
    mounts: dict[str, str] = {}
    all_mounts = dict(layout.v1)
    if layout.unified:
        all_mounts[""] = layout.unified
    for c, mnt in all_mounts.items():
        base = own.get(c, "/") if not inner.startswith("/") else "/"
        rel = os.path.normpath(os.path.join(base, inner)).lstrip("/")
        paths[c] = os.path.join(mnt, rel)
        mounts[c] = mnt
    # What create() will make, known before it makes anything: saved early, it lets
    # `delete -f` clean up after a runtime killed between a mkdir and the next save.
    planned: list[str] = []
    for c in sorted(paths, key=lambda k: (k == "", k)):
        d = mounts[c]
        for part in os.path.relpath(paths[c], mounts[c]).split("/"):
            d = os.path.join(d, part)
            if d not in planned and not os.path.isdir(d):
                planned.append(d)
    m = Manager({"version": 1, "mode": layout.mode, "root": layout.root, "paths": paths,
                 "mounts": mounts, "created": [], "planned": planned})
    m._resources = resources
    m._rules = rules
    m._needed = needed
    return m


def from_state(data: dict[str, Any]) -> Manager:
    """The Manager of a container saved with :meth:`Manager.to_state`."""
    return Manager(data)


class Manager:
    """One container's cgroups."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.mode: str = str(data.get("mode", "v1"))
        self.root: str = str(data.get("root", DEFAULT_ROOT))
        self._paths: dict[str, str] = dict(data.get("paths") or {})
        self._mounts: dict[str, str] = dict(data.get("mounts") or {})
        self.created: list[str] = list(data.get("created") or [])
        # Directories that did not exist when the container was planned (see `manager`).
        self.planned: list[str] = [str(p) for p in data.get("planned") or []]
        # The container's own directories passed the fit check (see `destroy`).
        self.owned = data.get("owned") is True
        self._resources: Resources | None = None
        self._rules: list[tuple[bool, str, int, int, str]] | None = None
        self._needed: set[str] = set()

    # --- state -------------------------------------------------------------------
    def to_state(self) -> dict[str, Any]:
        return {"version": 1, "mode": self.mode, "root": self.root, "paths": dict(self._paths),
                "mounts": dict(self._mounts), "created": list(self.created), "owned": self.owned,
                "planned": list(self.planned)}

    def paths(self) -> dict[str, str]:
        return dict(self._paths)

    def mounts(self) -> dict[str, str]:
        """controller -> mount point of its hierarchy ("" for cgroup2)."""
        return dict(self._mounts)

    def _dirs(self) -> list[str]:
        """Distinct directories: v1 hierarchies first, then the cgroup2 one."""
        seen: list[str] = []
        for key in sorted(self._paths, key=lambda k: (k == "", k)):
            d = self._paths[key]
            if d not in seen:
                seen.append(d)
        return seen

    def _v1(self, controller: str) -> str | None:
        return self._paths.get(controller) if controller else None

    def _v2(self) -> str | None:
        return self._paths.get("")

    # --- create / set ------------------------------------------------------------
    def create_unified(self) -> bool:
        """mkdir only the cgroup2 directory, where the init can then be born
        (clone3 CLONE_INTO_CGROUP) while the parent makes the rest with `create`.

        False (and nothing made) when any of the container's directories was there
        already: `create` must check they are fit (empty, thawed) before anyone is
        born in them."""
        if "" not in self._paths:
            return True
        if any(os.path.isdir(d) for d in self._dirs()):
            return False
        try:
            self._mkdirs(self._mounts.get("", os.path.dirname(self._paths[""])), self._paths[""],
                         self._v2_enable_list(), False)  # fmt: skip
        except BaseException:
            self._remove_created(quiet=True, wait=0.0)  # a born init may be inside: the caller kills it, then destroy()s
            raise
        return self._paths[""] in self.created

    def create(self, resources: bool = True) -> None:
        """mkdir every hierarchy's directory and write linux.resources; undo on error.

        resources=False makes only the directories and the device rules (a
        directly cloned init joins them, and makes its /dev nodes, meanwhile);
        `apply_resources` then writes the limits."""
        try:
            v2_enable = self._v2_enable_list()
            for key in sorted(self._paths, key=lambda k: (k == "", k)):
                d = self._paths[key]
                if key == "" and d in self.created:
                    continue  # made by create_unified
                mnt = self._mounts.get(key, os.path.dirname(d))
                self._mkdirs(mnt, d, v2_enable if key == "" else None, key == "cpuset")
            if not all(d in self.created for d in self._dirs()):
                self._check_fit()  # directories we just made are empty and thawed
            self.owned = True
            # Device rules first: v1 passes through deny-all while they are written,
            # which must not meet the init's mknod of /dev nodes.
            from ocipy.linux.cgroups import devices

            self._set_devices(self._rules if self._rules is not None else list(devices.DEFAULT_RULES))
            if resources:
                self.apply_resources()
        except BaseException:
            self._remove_created(quiet=True, wait=0.0)  # a born init may be inside: the caller kills it, then destroy()s
            raise

    def apply_resources(self) -> None:
        """linux.resources but the device rules (`create` writes those)."""
        if self._resources is not None:
            self.set(self._resources, devices=False)

    def _check_fit(self) -> None:
        """config-linux.md "Control groups": a runtime MAY check whether the
        container's cgroup "is fit for purpose, and MUST generate an error if
        such a check fails. For example, a frozen cgroup or (for create
        operation) a non-empty cgroup."

        A frozen cgroup is refused with runc's words.  A non-empty one is, as in
        runc 1.1, only a warning (engines run a second container in a pod's
        cgroup; see docs/compat.md)."""
        from ocipy.errors import OcipyError

        if self.is_frozen():
            raise OcipyError(f"container's cgroup unexpectedly frozen ({self._dirs()[0]})")
        busy = self.pids()
        if busy:
            from ocipy import log

            log.warning(f"container's cgroup is not empty: {len(busy)} process(es) found "
                        f"({self._dirs()[0]})", "ocipy.linux.cgroups")

    def _v2_enable_list(self) -> list[str]:
        """cgroup v2 controllers to enable on the way down to the container's directory."""
        if "" not in self._paths:
            return []
        want: list[str] = []
        for c in sorted(self._needed):
            if c in self._paths:  # served by v1
                continue
            v2 = V2_NAME.get(c)
            if v2:
                want.append(v2)
        for key in (self._resources.unified if self._resources is not None else {}):
            c = key.split(".", 1)[0]
            if c != "cgroup" and c not in want:
                want.append(c)
        if self.mode == "v2":
            # as runc: enable every controller the parent offers, so stats work
            mnt = self._mounts.get("", self.root)
            for c in sorted(set((_read(os.path.join(mnt, "cgroup.controllers")) or "").split())):
                if c not in want:
                    want.append(c)
        return want

    def _mkdirs(self, mnt: str, target: str, v2_enable: list[str] | None, cpuset: bool) -> None:
        from ocipy.errors import KernelError
        from ocipy.linux.cgroups.common import write

        rel = os.path.relpath(target, mnt)
        parent = mnt
        for part in rel.split("/"):
            if part in ("", "."):
                continue
            d = os.path.join(parent, part)
            if v2_enable:
                self._enable(parent, v2_enable)
            made = False
            if not os.path.isdir(d):
                try:
                    os.mkdir(d, 0o755)
                    self.created.append(d)
                    made = True
                except FileExistsError:
                    pass
                except OSError as e:
                    raise KernelError("mkdir", d, e.errno or 5) from None
            if not made and d in self.planned:
                self.planned.remove(d)  # someone else made it meanwhile: not ours to remove
            if cpuset:
                # Every level, ours or not: a v1 cpuset made by someone else (a pod's
                # parent) may have empty cpus/mems too, and then no task can join below.
                from ocipy.linux.cgroups.common import init_cpuset

                init_cpuset(d, parent)
            parent = d
        _ = write

    def _enable(self, parent: str, controllers: list[str]) -> None:
        """Enable controllers for parent's children (cgroup.subtree_control), one by one.

        A needed controller that cannot be enabled is an error (config-linux.md
        "Unified": the runtime MUST generate an error)."""
        from ocipy.errors import ConfigError, KernelError
        from ocipy.linux.cgroups.common import read_opt, write

        available = set((read_opt(parent, "cgroup.controllers") or "").split())
        enabled = set((read_opt(parent, "cgroup.subtree_control") or "").split())
        required = {V2_NAME.get(c) or c for c in self._needed if c not in self._paths}
        unified = self._resources.unified if self._resources is not None else {}
        required |= {k.split(".", 1)[0] for k in unified} - {"cgroup"}
        for c in controllers:
            if c in enabled:
                continue
            if c not in available:
                if c in required:
                    raise ConfigError("linux.resources", f"the {c} controller is not available in {parent}")
                continue
            try:
                write(parent, "cgroup.subtree_control", f"+{c}")
            except KernelError:
                if c in required:
                    raise

    def set(self, resources: Resources, devices: bool = True) -> None:
        """Write linux.resources into the existing directories (create and update use this)."""
        from ocipy.errors import ConfigError
        from ocipy.spec.resources import W

        needed = controllers_needed(resources)
        v2dir = self._v2()
        v2_enabled = set(((_read(os.path.join(v2dir, "cgroup.controllers")) if v2dir else "") or "").split())

        def where(c: str) -> tuple[str, Any]:
            """The controller's directory and its writers' module (imported only
            when something is written: most creates set no limit)."""
            d = self._v1(c)
            if d:
                from ocipy.linux.cgroups import v1

                return d, v1
            v2n = V2_NAME.get(c)
            if v2dir and v2n and v2n in v2_enabled:
                from ocipy.linux.cgroups import v2

                return v2dir, v2
            raise ConfigError(f"{W}.{FIELD[c]}", f"the {c} cgroup controller is not available for this container")

        cpu, net = resources.cpu, resources.network
        writes: tuple[tuple[str, str, object], ...] = (
            ("memory", "set_memory", resources.memory), ("cpuset", "set_cpuset", cpu), ("cpu", "set_cpu", cpu),
            ("pids", "set_pids", resources.pids_limit), ("blkio", "set_blkio", resources.block_io),
            ("hugetlb", "set_hugetlb", resources.hugepage_limits), ("net_cls", "set_net_cls", net),
            ("net_prio", "set_net_prio", net), ("rdma", "set_rdma", resources.rdma))  # fmt: skip
        for controller, writer, value in writes:
            if controller in needed and value is not None:
                d, mod = where(controller)
                getattr(mod, writer)(d, value)
        unified = resources.unified
        if unified:
            if self.mode != "v2":
                lay = Layout(self.root)
                lay.mode = self.mode
                lay.v1 = {k: v for k, v in self._mounts.items() if k}
                lay.unified = self._mounts.get("")
                lay.v2_controllers = v2_enabled
                check_unified(unified, lay)
            if not v2dir:
                raise ConfigError(f"{W}.unified", "cgroup v2 is not mounted on this host")
            from ocipy.linux.cgroups import v2

            v2.set_unified(v2dir, unified, v2_enabled)
        if devices and resources.devices is not None:
            self._set_devices(resources.devices)

    def _set_devices(self, rules: list[tuple[bool, str, int, int, str]]) -> None:
        from ocipy.linux.cgroups import devices

        d = self._v1("devices")
        if d:
            devices.set_v1(d, rules)
        elif self.mode == "v2" and self._v2():
            from ocipy.linux.cgroups import ebpf

            ebpf.attach(str(self._v2()), rules)

    # --- processes -----------------------------------------------------------------
    def apply(self, pid: int) -> None:
        from ocipy.linux.cgroups.common import write

        for d in self._dirs():
            write(d, "cgroup.procs", pid)

    join = apply

    def for_exec(self, specs: list[str] | None, init_pid: int, self_cgroup: str | None = None) -> Manager:
        """The cgroups an `exec` process joins: `specs` as `sub_cgroups` (exec --cgroup),
        else the container's own.

        cgroup v2 has no internal processes: once the container enabled a domain
        controller in its cgroup's subtree_control (with its init moved below),
        nothing can join the container's cgroup itself, and the process joins the
        init's cgroup instead, as runc does.  `self_cgroup` (the init's
        /proc/PID/cgroup text) is for tests."""
        if specs:
            return self.sub_cgroups(specs)
        v2 = self._v2()
        mnt = self._mounts.get("")
        if v2 is None or mnt is None or not (_read(os.path.join(v2, "cgroup.subtree_control")) or "").split():
            return self
        text = self_cgroup if self_cgroup is not None else (_read(f"/proc/{init_pid}/cgroup") or "")
        rel = next((line[3:] for line in text.splitlines() if line.startswith("0::")), None)
        if rel is None:
            return self
        target = os.path.normpath(os.path.join(mnt, rel.lstrip("/")))
        if not target.startswith(v2.rstrip("/") + "/") or not os.path.isdir(target):
            return self
        data = self.to_state()
        data["paths"] = dict(self._paths, **{"": target})
        data["created"], data["owned"], data["planned"] = [], False, []
        return Manager(data)

    def sub_cgroups(self, specs: list[str]) -> Manager:
        """The Manager an `exec --cgroup` process joins: `specs` are runc's
        ``[CONTROLLER[,CONTROLLER...]:]PATH`` arguments, PATH relative to the
        container's cgroup in those hierarchies (every one without a prefix,
        which only a single argument may omit).  Each must exist and stay
        inside the container's cgroup ("is not a sub cgroup path")."""
        from ocipy.errors import OcipyError

        wanted: dict[str, str] = {}
        for spec in specs:
            parts = spec.split(":")
            if len(parts) > 2:
                raise OcipyError(f"invalid --cgroup argument: {spec}")
            if len(parts) == 1:
                if len(specs) != 1:
                    raise OcipyError(f"invalid --cgroup argument: {spec} (missing <controller>: prefix)")
                for key in self._paths:
                    wanted[key] = spec
                continue
            for ctrl in parts[0].split(","):
                if not ctrl:
                    raise OcipyError(f"invalid --cgroup argument: {spec} (empty <controller> prefix)")
                key = ctrl if ctrl in self._paths else f"name={ctrl}"
                if key not in self._paths:
                    raise OcipyError(f"invalid --cgroup argument: unknown controller {ctrl!r} in {spec}")
                if key in wanted:
                    raise OcipyError(f"invalid --cgroup argument(s): controller {ctrl} specified multiple times")
                wanted[key] = parts[1]
        paths = dict(self._paths)
        for key, sub in wanted.items():
            if not sub:
                raise OcipyError("empty --cgroup argument")
            if "\0" in sub:
                raise OcipyError(f"--cgroup {sub!r}: contains a NUL character")
            base = self._paths[key]
            target = os.path.normpath(os.path.join(base, sub.lstrip("/")))
            if target != base and not target.startswith(base.rstrip("/") + "/"):
                raise OcipyError(f"--cgroup: {sub} is not a sub cgroup path")
            if not os.path.isdir(target):
                # runc's wording, which tools and its tests match
                raise OcipyError(f"error adding pid to cgroups: open {target}/cgroup.procs: "
                                 "no such file or directory")
            paths[key] = target
        data = self.to_state()
        data["paths"] = paths
        data["created"], data["owned"], data["planned"] = [], False, []
        return Manager(data)

    def v2_dir(self) -> str | None:
        """The cgroup2 directory, where a child can be born (clone3 CLONE_INTO_CGROUP)."""
        return self._v2()

    def join_self_v1(self) -> None:
        """Move the calling single-threaded process into every v1 hierarchy.

        Writing ``0`` to ``tasks`` moves the caller's own thread, for which the
        kernel skips the threadgroup lock whose first taking after an idle
        period waits for an RCU grace period (5-20 ms); a pid written to
        ``cgroup.procs`` always takes it.
        """
        from ocipy.linux.cgroups.common import write

        v2 = self._v2()
        for d in self._dirs():
            if d != v2:
                write(d, "tasks", 0)

    def pids(self) -> list[int]:
        """Every process in the container's cgroup and its descendants (host pids)."""
        d = self._v2() if self.mode == "v2" else (
            self._v1("freezer") or self._v1("devices") or self._v1("pids") or next(iter(self._dirs()), None))
        if not d:
            return []
        out: list[int] = []
        for dirpath, _dirs, files in os.walk(d):
            if "cgroup.procs" in files:
                for line in (_read(os.path.join(dirpath, "cgroup.procs")) or "").split():
                    if line.isdigit() and int(line) not in out:
                        out.append(int(line))
        return out

    # --- freezer -------------------------------------------------------------------
    def _freezer(self) -> tuple[str, str]:
        from ocipy.errors import OcipyError

        d = self._v1("freezer")
        if d:
            return "v1", d
        d2 = self._v2()
        if d2 and os.path.exists(os.path.join(d2, "cgroup.freeze")):
            return "v2", d2
        raise OcipyError("cgroups: no freezer is available for this container")

    def freeze(self) -> None:
        self._set_frozen(True)

    def thaw(self) -> None:
        self._set_frozen(False)

    def _set_frozen(self, frozen: bool) -> None:
        import time

        from ocipy.errors import OcipyError
        from ocipy.linux.cgroups.common import read_keyed, read_opt, write

        kind, d = self._freezer()
        deadline = time.monotonic() + 5.0
        delay = 0.0005
        while True:
            if kind == "v1":
                want = "FROZEN" if frozen else "THAWED"
                write(d, "freezer.state", want)
                if (read_opt(d, "freezer.state") or "").strip() == want:
                    return
            else:
                write(d, "cgroup.freeze", "1" if frozen else "0")
                events = read_keyed(d, "cgroup.events")
                if "frozen" not in events or events["frozen"] == int(frozen):
                    return
            if time.monotonic() > deadline:
                if frozen:
                    try:
                        self._set_frozen(False)
                    except OcipyError:
                        pass
                raise OcipyError(f"cgroups: timed out {'freezing' if frozen else 'thawing'} {d}")
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def is_frozen(self) -> bool:
        from ocipy.linux.freezer import is_frozen

        return is_frozen(self._paths)

    def kill_all(self, sig: int) -> None:
        """Signal every process: freeze, signal, thaw (as runc does for kill --all / delete -f)."""
        import signal

        from ocipy.errors import OcipyError
        from ocipy.linux.cgroups.common import write

        d2 = self._v2()
        if self.mode == "v2" and d2 and sig == signal.SIGKILL and os.path.exists(os.path.join(d2, "cgroup.kill")):
            write(d2, "cgroup.kill", "1")
            return
        try:
            self._freezer()
            can_freeze = True
        except OcipyError:
            can_freeze = False
        if can_freeze:
            try:
                self.freeze()
            except OcipyError:
                can_freeze = False
        try:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        finally:
            if can_freeze:
                self.thaw()

    # --- destroy ---------------------------------------------------------------------
    def destroy(self) -> None:
        """rmdir the container's cgroups and every cgroup below them (children
        first), and the parents we created.

        A container directory that was there before (a pod manager's, a test's)
        is removed too once it became the container's (it passed the fit check),
        as runc removes it: left behind, it keeps its limits (a realtime budget,
        a frozen state) and breaks the next container there.  Before that, and
        for parents, only what we made is removed."""
        if self.owned:
            import time

            from ocipy.errors import KernelError

            deadline = time.monotonic() + 0.2
            for d in reversed(self._dirs()):
                if d not in self.created:
                    try:
                        _rmtree_cgroup(d, deadline)
                    except KernelError:
                        pass  # still used by someone else (a shared cgroup): theirs to remove
        self._remove_created(quiet=False)

    def _remove_created(self, quiet: bool, wait: float = 1.0) -> None:
        import errno
        import time

        from ocipy.errors import KernelError

        first: KernelError | None = None
        left: list[str] = []
        deadline = time.monotonic() + wait  # EBUSY retries, shared by every directory
        leaves = set(self._dirs())
        # what we made, and what we were about to make (a create killed before it
        # recorded a mkdir); children first
        todo = sorted(dict.fromkeys(self.planned + self.created), key=lambda p: -p.count("/"))
        for d in todo:
            if d not in leaves:
                # A parent we made: only if it is empty now.  Another container may have
                # been placed below it meanwhile; its cgroups are not ours to remove.
                try:
                    os.rmdir(d)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    left.insert(0, d)  # still ours: a later destroy tries again
                    if e.errno not in (errno.ENOTEMPTY, errno.EBUSY, errno.EEXIST):
                        first = first or KernelError("rmdir", d, e.errno or errno.EIO)
                continue
            try:
                _rmtree_cgroup(d, deadline)  # the container's own: with what was made inside
            except KernelError as e:
                left.insert(0, d)
                first = first or e
        self.created = left
        self.planned = []
        if first and not quiet:
            raise first

    # --- stats and events -------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        """runc's `events --stats` data (types.Stats JSON shape)."""
        from ocipy.linux.cgroups import v1, v2

        d2 = self._v2()
        v2c = set(((_read(os.path.join(d2, "cgroup.controllers")) if d2 else "") or "").split())
        out: dict[str, Any] = {}
        if self._v1("cpu") or self._v1("cpuacct"):
            out["cpu"] = v1.cpu_stats(self._v1("cpu"), self._v1("cpuacct"))
        elif d2:
            out["cpu"] = v2.cpu_stats(d2)
        if self._v1("cpuset"):
            out["cpuset"] = v1.cpuset_stats(str(self._v1("cpuset")))
        else:
            out["cpuset"] = {}
        if self._v1("memory"):
            out["memory"] = v1.memory_stats(str(self._v1("memory")))
        elif d2 and "memory" in v2c:
            out["memory"] = v2.memory_stats(d2)
        else:
            out["memory"] = {"usage": {"limit": 0, "failcnt": 0}, "swap": {"limit": 0, "failcnt": 0},
                             "kernel": {"limit": 0, "failcnt": 0}, "kernelTCP": {"limit": 0, "failcnt": 0}}
        if self._v1("pids"):
            out["pids"] = v1.pids_stats(str(self._v1("pids")))
        elif d2 and "pids" in v2c:
            out["pids"] = v2.pids_stats(d2)
        else:
            out["pids"] = {}
        if self._v1("blkio"):
            out["blkio"] = v1.blkio_stats(str(self._v1("blkio")))
        elif d2 and "io" in v2c:
            out["blkio"] = v2.io_stats(d2)
        else:
            out["blkio"] = {}
        hd = self._v1("hugetlb")
        if hd:
            out["hugetlb"] = v1.hugetlb_stats(hd, _page_sizes(hd, ".limit_in_bytes"))
        elif d2 and "hugetlb" in v2c:
            out["hugetlb"] = v2.hugetlb_stats(d2, _page_sizes(d2, ".max"))
        else:
            out["hugetlb"] = {}
        out["intel_rdt"] = {}
        out["network_interfaces"] = None
        out.setdefault("cpu", {"usage": {"kernel": 0, "user": 0}, "throttling": {}})
        # runc's types.Stats field order
        order = ("cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces")
        return {k: out[k] for k in order}

    def oom_events(self) -> OomWatcher:
        """A watcher for OOM kills: select() on .fileno() (v1) or poll .check() (v1 and v2)."""
        return OomWatcher(self._v1("memory"), self._v2())


def _page_sizes(d: str, suffix: str) -> list[str]:
    sizes: list[str] = []
    try:
        names = os.listdir(d)
    except OSError:
        return sizes
    for n in sorted(names):
        if n.startswith("hugetlb.") and n.endswith(suffix) and ".rsvd." not in n:
            sizes.append(n[len("hugetlb."):-len(suffix)])
    return sizes


def _rmtree_cgroup(d: str, deadline: float) -> None:
    """rmdir d and the cgroups below it, deepest first; retry on EBUSY until `deadline`.

    No recursion: a container may nest its own cgroups as deep as the kernel
    lets it (cgroup.max.depth is unlimited by default)."""
    import errno

    from ocipy.errors import KernelError

    # (path, children listed yet): a directory is removed once its children are.
    stack = [(d, False)]
    while stack:
        path, listed = stack.pop()
        if not listed:
            try:
                os.rmdir(path)  # the common case: no child cgroups (a cgroup's files do not count)
                continue
            except FileNotFoundError:
                continue
            except OSError as e:
                if e.errno not in (errno.EBUSY, errno.ENOTEMPTY):  # children first, then again below
                    raise KernelError("rmdir", path, e.errno or errno.EIO) from None
            try:
                subdirs = [e.path for e in os.scandir(path) if e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                continue
            except OSError as e:
                raise KernelError("rmdir", path, e.errno or errno.EIO) from None
            stack.append((path, True))
            stack.extend((sub, False) for sub in subdirs)
            continue
        _rmdir_retrying(path, deadline)


def _rmdir_retrying(path: str, deadline: float) -> None:
    """rmdir a cgroup whose last processes may still be leaving it (EBUSY)."""
    import errno
    import time

    from ocipy.errors import KernelError

    delay = 0.01
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise KernelError("rmdir", path, e.errno or errno.EIO) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


class OomWatcher:
    """OOM notifications.  v1: an eventfd registered through cgroup.event_control for
    memory.oom_control; v2: the oom_kill counter of memory.events (polled)."""

    def __init__(self, v1_memory: str | None, v2_dir: str | None) -> None:
        self.v1 = v1_memory
        self.v2 = None if v1_memory else v2_dir
        self._efd: int | None = None
        self._last = self._count()
        if self.v1:
            from ocipy.linux.cgroups.common import write

            efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
            try:
                ofd = os.open(os.path.join(self.v1, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
                try:
                    write(self.v1, "cgroup.event_control", f"{efd} {ofd}")
                finally:
                    os.close(ofd)
            except BaseException:
                os.close(efd)
                raise
            self._efd = efd

    def fileno(self) -> int | None:
        return self._efd

    def _count(self) -> int:
        from ocipy.linux.cgroups.common import read_keyed

        if self.v1:
            return read_keyed(self.v1, "memory.oom_control").get("oom_kill", 0)
        if self.v2:
            ev = read_keyed(self.v2, "memory.events")
            return ev.get("oom_kill", ev.get("oom", 0))
        return 0

    def check(self) -> int:
        """How many OOM events happened since the last check."""
        fired = 0
        if self._efd is not None:
            try:
                fired = os.eventfd_read(self._efd)
            except BlockingIOError:
                fired = 0
            if self.v1 and not os.path.isdir(self.v1):
                fired = 0  # v1 also signals the eventfd when the cgroup is removed
        count = self._count()
        delta = max(count - self._last, 0)
        self._last = max(count, self._last)
        return max(delta, fired)

    def close(self) -> None:
        if self._efd is not None:
            os.close(self._efd)
            self._efd = None


def features() -> dict[str, bool]:
    """runtime-spec features-linux.md "cgroup": what this runtime implements."""
    return {"v1": True, "v2": True, "systemd": False, "systemdUser": False, "rdma": True}
