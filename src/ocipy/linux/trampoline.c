/*
 * ocipy exe guard trampoline: the last step before the container's program.
 *
 * The runtime is a Python interpreter.  If it execve()s the container's
 * program directly, then while the kernel loads that program
 * /proc/self/exe is still the *host's* interpreter, and a container script
 * starting with `#!/proc/self/exe` makes the kernel run the host interpreter
 * as a container process (dumpable, so other container processes can open
 * /proc/PID/exe and later write the host binary: CVE-2019-5736 class).
 *
 * ocipy/linux/exe_guard.py copies this tiny static program into a sealed
 * memfd and executes it instead; it then execve()s the real program.  During
 * that execve /proc/self/exe is the sealed memfd, never a host file.
 *
 * Calling convention (set by exe_guard.py):
 *     argv[0] = MAGIC, argv[1] = path to execute, argv[2..] = its argv
 * Any other argv[0] means the kernel started us as a script interpreter
 * (`#!/proc/self/exe`): refuse, do not loop.
 *
 * Freestanding: no libc, raw syscalls, x86_64 and aarch64.
 * Build: the Makefile's FREESTANDING_CC (the launcher shares it).
 */

#define MAGIC "ocipy-exe-guard"

#include "freestanding.h"

FREESTANDING_MAIN(guard_main);

static int same(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	return *a == *b;
}

static const char *errname(long e)
{
	switch (e) {
	case 1: return "operation not permitted";
	case 2: return "no such file or directory";
	case 7: return "argument list too long";
	case 8: return "exec format error";
	case 12: return "cannot allocate memory";
	case 13: return "permission denied";
	case 20: return "not a directory";
	case 21: return "is a directory";
	case 26: return "text file busy";
	case 36: return "file name too long";
	case 40: return "too many levels of symbolic links";
	default: return "exec failed";
	}
}

__attribute__((noreturn, used)) void guard_main(long *sp)
{
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	long err;

	if (argc < 3 || !same(argv[0], MAGIC)) {
		say("ocipy: exe guard: refusing to run as an interpreter (#!/proc/self/exe)\n");
		sys3(NR_exit_group, 126, 0, 0);
	}
	err = -sys3(NR_execve, (long)argv[1], (long)(argv + 2), (long)envp);
	say("ocipy: exec ");
	say(argv[1]);
	say(": ");
	say(errname(err));
	say("\n");
	sys3(NR_exit_group, err == 2 ? 127 : 126, 0, 0);
	for (;;)
		;
}
