/*
 * ocipy.linux._syscall: one function, syscall(nr, *args), for the system
 * calls Python's os module lacks (mount, setns, clone3, openat2, ...).
 *
 * Why C and not ctypes: importing ctypes (and libffi) costs ~2.8 ms on every
 * runtime command that talks to the kernel, over a tenth of a `create`
 * (bench/FINDINGS.md).  This module is the whole of the C: the wrappers,
 * structures and error messages stay in syscalls.py.  Built by `make install`;
 * syscalls.py falls back to ctypes when it is missing.
 *
 * Arguments: int (passed as a long), None (NULL), bytes (a read-only
 * pointer), or a writable buffer such as bytearray (a pointer the kernel may
 * fill).  Returns the result; raises OSError with errno on -1.
 *
 * The GIL stays held: a clone3 child must come back with it, and none of the
 * calls made through here blocks for long.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_ARGS 6

static PyObject *ocipy_syscall(PyObject *self, PyObject *args)
{
    Py_ssize_t n = PyTuple_GET_SIZE(args);
    long values[MAX_ARGS] = {0};
    Py_buffer views[MAX_ARGS];
    int held[MAX_ARGS] = {0};
    PyObject *result = NULL;
    long nr, rc;
    Py_ssize_t i;

    (void)self;
    if (n < 1 || n > MAX_ARGS + 1) {
        PyErr_SetString(PyExc_TypeError, "syscall(nr, *args) takes 1 to 7 arguments");
        return NULL;
    }
    nr = PyLong_AsLong(PyTuple_GET_ITEM(args, 0));
    if (nr == -1 && PyErr_Occurred())
        return NULL;
    for (i = 1; i < n; i++) {
        PyObject *arg = PyTuple_GET_ITEM(args, i);
        if (arg == Py_None) {
            values[i - 1] = 0;
        } else if (PyLong_Check(arg)) {
            /* unsigned first: flags like CLONE_INTO_CGROUP or ~0U do not fit a long's sign */
            unsigned long u = PyLong_AsUnsignedLongMask(arg);
            if (u == (unsigned long)-1 && PyErr_Occurred())
                goto done;
            values[i - 1] = (long)u;
        } else if (PyBytes_Check(arg)) {
            values[i - 1] = (long)PyBytes_AS_STRING(arg);
        } else {
            if (PyObject_GetBuffer(arg, &views[i - 1], PyBUF_WRITABLE) < 0)
                goto done;
            held[i - 1] = 1;
            values[i - 1] = (long)views[i - 1].buf;
        }
    }
    errno = 0;
    rc = syscall(nr, values[0], values[1], values[2], values[3], values[4], values[5]);
    if (rc == -1)
        PyErr_SetFromErrno(PyExc_OSError);
    else
        result = PyLong_FromLong(rc);
done:
    for (i = 0; i < MAX_ARGS; i++)
        if (held[i])
            PyBuffer_Release(&views[i]);
    return result;
}

static PyMethodDef methods[] = {
    {"syscall", ocipy_syscall, METH_VARARGS, "syscall(nr, *args) -> int; OSError on failure"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_syscall", "Raw system calls for ocipy.linux.syscalls.", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__syscall(void)
{
    return PyModule_Create(&module);
}
