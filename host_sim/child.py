"""Child processes that cannot outlive the command that started them (Linux)."""
import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def dies_with_parent():
    """A preexec_fn for subprocess.Popen: the kernel sends the child SIGKILL when the process
    that started it dies, however it dies (SIGKILL included), so no child is left running."""
    parent = os.getpid()

    def preexec():
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)
    return preexec
