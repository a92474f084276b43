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
 * The paths are compiled in by scripts/make_launcher.py (launcher-paths.h).
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/mount.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "launcher-paths.h" /* OCIPY_PYTHON, OCIPY_CODE */

extern char **environ;

int main(int argc, char **argv)
{
	/* python -IS -c CODE ARGS...: isolated, no site; CODE sets sys.path. */
	char *args[argc + 4];
	args[0] = OCIPY_PYTHON;
	args[1] = "-IS";
	args[2] = "-c";
	args[3] = OCIPY_CODE;
	for (int i = 1; i < argc; i++)
		args[i + 3] = argv[i];
	args[argc + 3] = NULL;

	int fd = (int)syscall(SYS_open_tree, AT_FDCWD, OCIPY_PYTHON, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
	if (fd >= 0) {
		struct mount_attr attr = {
			.attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
		};
		if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) == 0)
			syscall(SYS_execveat, fd, "", args, environ, AT_EMPTY_PATH);
		close(fd); /* never run a writable clone: fall back to the path */
	}
	execve(OCIPY_PYTHON, args, environ);
	int err = errno;
	fprintf(stderr, "ocipy: cannot execute %s: %s (run `make install`)\n", OCIPY_PYTHON, strerror(err));
	return 127;
}
