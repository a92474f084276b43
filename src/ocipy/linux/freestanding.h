/*
 * What ocipy's two freestanding programs share (launcher.c, trampoline.c):
 * raw system calls and the process entry, for x86_64 and aarch64, no libc.
 *
 * FREESTANDING_MAIN(fn) defines _start, which calls `void fn(long *sp)` with
 * the initial stack: sp[0] = argc, then argv, NULL, envp, NULL.
 */

#ifndef OCIPY_FREESTANDING_H
#define OCIPY_FREESTANDING_H

/* the same numbers on every architecture */
#define NR_open_tree 428
#define NR_mount_setattr 442

#if defined(__x86_64__)
#define NR_write 1
#define NR_close 3
#define NR_execve 59
#define NR_exit_group 231
#define NR_execveat 322

static inline long sys5(long n, long a, long b, long c, long d, long e)
{
	long ret;
	register long r10 __asm__("r10") = d;
	register long r8 __asm__("r8") = e;
	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

#define FREESTANDING_MAIN(fn)                                   \
	__asm__(".text\n"                                       \
		".global _start\n"                              \
		"_start:\n"                                     \
		"  xor %rbp, %rbp\n"                            \
		"  mov %rsp, %rdi\n"                            \
		"  and $-16, %rsp\n"                            \
		"  call " #fn "\n"                              \
		"  hlt\n")
#elif defined(__aarch64__)
#define NR_write 64
#define NR_close 57
#define NR_execve 221
#define NR_exit_group 94
#define NR_execveat 281

static inline long sys5(long n, long a, long b, long c, long d, long e)
{
	register long x8 __asm__("x8") = n;
	register long x0 __asm__("x0") = a;
	register long x1 __asm__("x1") = b;
	register long x2 __asm__("x2") = c;
	register long x3 __asm__("x3") = d;
	register long x4 __asm__("x4") = e;
	__asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4) : "memory");
	return x0;
}

#define FREESTANDING_MAIN(fn)                                   \
	__asm__(".text\n"                                       \
		".global _start\n"                              \
		"_start:\n"                                     \
		"  mov x29, #0\n"                               \
		"  mov x0, sp\n"                                \
		"  and sp, x0, #-16\n"                          \
		"  bl " #fn "\n")
#else
#error "unsupported architecture"
#endif

static inline long sys3(long n, long a, long b, long c)
{
	return sys5(n, a, b, c, 0, 0);
}

static inline void say(const char *s) /* to stderr */
{
	unsigned long n = 0;
	while (s[n])
		n++;
	sys5(NR_write, 2, (long)s, (long)n, 0, 0);
}

#endif
