# ocipy — make install | make test | make demo | make bench | make lint
# Debian's interpreter when there is one: built with PGO/LTO and a static
# libpython, it starts ~2.5 ms faster than a shared-libpython build (pyenv's),
# and every runtime command pays the interpreter's start (bench/FINDINGS.md).
PYTHON ?= $(shell test -x /usr/bin/python3.11 && echo /usr/bin/python3.11 || echo python3)
VENV   := .venv
PY     := $(VENV)/bin/python
OCIPY  := $(VENV)/bin/ocipy
# Debian packages the tests, the demo and the benchmarks use (peers included).
DEB_PACKAGES := busybox-static runc crun containerd umoci skopeo docker-registry libseccomp2 iproute2 util-linux procps gcc libc6-dev podman conmon slirp4netns python3.11-venv python3.11-dev

.PHONY: install deps venv launcher trampoline syscall-ext codecache test unit lint demo bench clean

install: deps venv launcher trampoline syscall-ext codecache

# .venv/bin/ocipy: a static launcher that runs the interpreter from a
# read-only bind of itself (src/ocipy/linux/launcher.c says why).
launcher: $(OCIPY)

# The launcher and the exe guard's trampoline are both freestanding: static, no libc
# (launcher.c says why); one compile command for the two.
FREESTANDING_CC := gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -fno-pie -no-pie \
    -fno-asynchronous-unwind-tables -Wl,--build-id=none -s -Wall -Wextra -Werror

$(OCIPY): scripts/make_launcher.py src/ocipy/linux/launcher.c src/ocipy/linux/freestanding.h $(VENV)/.installed
	$(PY) scripts/make_launcher.py $(VENV) src $(FREESTANDING_CC)

# The exe guard's trampoline (src/ocipy/linux/exe_guard.py): freestanding, static, no libc.
TRAMPOLINE := src/ocipy/linux/ocipy-exe-guard
trampoline: $(TRAMPOLINE)

$(TRAMPOLINE): src/ocipy/linux/trampoline.c src/ocipy/linux/freestanding.h
	$(FREESTANDING_CC) -Wl,-z,noseparate-code -o $@.tmp $<
	mv $@.tmp $@

# ocipy.linux._syscall: raw system calls without importing ctypes (~2.8 ms of
# every runtime command's start); syscalls.py falls back to ctypes without it.
# The file name depends on the venv's interpreter, known only once it exists.
SYSCALL_SRC := src/ocipy/linux/_syscall.c
syscall-ext: venv
	@out=src/ocipy/linux/_syscall$$($(PY) -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))"); \
	if [ ! -f "$$out" ] || [ $(SYSCALL_SRC) -nt "$$out" ]; then \
	  inc=$$($(PY) -c "import sysconfig; print(sysconfig.get_paths()['include'])"); \
	  echo "gcc -shared $(SYSCALL_SRC) -> $$out"; \
	  gcc -O2 -shared -fPIC -Wall -Wextra -Werror -I"$$inc" -o "$$out.tmp" $(SYSCALL_SRC) && mv "$$out.tmp" "$$out"; \
	fi

# The runtime's code cache (src/ocipy/codecache.py): written after the
# extension above (it is one of the modules listed), on every install -- it
# takes a second, and a stale entry would only be skipped, never used.
codecache: venv syscall-ext
	$(PY) scripts/make_codecache.py $(VENV) src $(VENV)/ocipy-codecache

deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev]'
	@# Bytecode ahead of time: the runtime is started for every container operation.
	$(PY) -m compileall -q src
	touch $@

test: install lint
	$(PY) -m pytest -q -p no:cacheprovider tests

unit: venv
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

lint: venv  # ruff and mypy --strict must stay clean: `make test` runs this first
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/mypy

demo: install
	bash scripts/demo.sh

bench: install
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info $(TRAMPOLINE) src/ocipy/linux/_syscall.*.so
