/*
 * The `ocipy` command: start the interpreter from a read-only bind of itself.
 *
 * ocipy's runtime is a Python interpreter, and it is that interpreter which
 * sits inside a container until the user's program is executed: the init
 * waits on the exec fifo as Python, and `exec` joins the container as
 * Python.  /proc/PID/exe of such a process is the *host's* interpreter.
 * The processes are non-dumpable, but a container granted CAP_SYS_PTRACE
 * (and no user namespace) may open /proc/PID/exe anyway and, once the
 * interpreter stops running, write the host's python through it
 * (CVE-2019-5736 class).
 *
 * So this launcher clones a detached mount of just the interpreter file
 * (open_tree OPEN_TREE_CLONE), makes that mount read-only, and executes the
 * interpreter through it (execveat AT_EMPTY_PATH).  /proc/PID/exe of the
 * runtime and of every child it forks is then a file on a mount that is
 * read-only and in no mount namespace: opening it for writing fails with
 * EROFS, and no process can make it writable again.  runc gets the same
 * property by running `runc init` from a sealed or read-only copy of itself.
 *
 * Where the kernel or the caller's privileges do not allow it (open_tree or
 * mount_setattr missing, not root), the interpreter is executed by path as
 * before; containers run by an unprivileged user have a user namespace, in
 * which CAP_SYS_PTRACE does not reach the runtime's processes.
 *
 * Freestanding (no libc, raw system calls, x86_64 and aarch64), like the
 * exe guard's trampoline: every runtime command starts here, and a static
 * glibc program's own start and its larger image cost ~0.35 ms of each
 * (bench/FINDINGS.md).
 *
 * The paths are compiled in by scripts/make_launcher.py (launcher-paths.h).
 */

#include "launcher-paths.h" /* OCIPY_PYTHON, OCIPY_CODE */

#include "freestanding.h"

#define OPEN_TREE_CLONE 1
#define OPEN_TREE_CLOEXEC 02000000
#define AT_FDCWD (-100)
#define AT_EMPTY_PATH 0x1000
#define MOUNT_ATTR_RDONLY 0x1
#define MOUNT_ATTR_NOSUID 0x2
#define MOUNT_ATTR_NODEV 0x4

FREESTANDING_MAIN(launcher_main);

struct mount_attr {
	unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

__attribute__((noreturn, used)) void launcher_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;

	/* python -IS -c CODE ARGS...: isolated, no site; CODE sets sys.path. */
	char *args[argc + 4];
	args[0] = OCIPY_PYTHON;
	args[1] = "-IS";
	args[2] = "-c";
	args[3] = OCIPY_CODE;
	for (long i = 1; i < argc; i++)
		args[i + 3] = argv[i];
	args[argc + 3] = 0;

	long fd = sys5(NR_open_tree, AT_FDCWD, (long)OCIPY_PYTHON, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC, 0, 0);
	if (fd >= 0) {
		struct mount_attr attr = {MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, 0, 0, 0};
		if (sys5(NR_mount_setattr, fd, (long)"", AT_EMPTY_PATH, (long)&attr, sizeof attr) == 0)
			sys5(NR_execveat, fd, (long)"", (long)args, (long)envp, AT_EMPTY_PATH);
		sys5(NR_close, fd, 0, 0, 0, 0); /* never run a writable clone: fall back to the path */
	}
	long err = -sys5(NR_execve, (long)OCIPY_PYTHON, (long)args, (long)envp, 0, 0);
	char num[4] = {(char)('0' + err / 100 % 10), (char)('0' + err / 10 % 10), (char)('0' + err % 10), 0};
	say("ocipy: cannot execute " OCIPY_PYTHON " (errno ");
	say(num[0] == '0' ? (num[1] == '0' ? num + 2 : num + 1) : num);
	say("; run `make install`)\n");
	sys5(NR_exit_group, 127, 0, 0, 0, 0);
	for (;;)
		;
}
