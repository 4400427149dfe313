"""Child processes that never outlive the process that started them."""

from __future__ import annotations

import ctypes
import os
import signal
import sys


def die_with_parent(parent: int) -> None:
    """In a pool worker (Linux): be killed when the study process ``parent`` dies, however it dies.
    Otherwise a killed ``metapb2-study`` leaves its workers running their steps, and one whose Ray
    head went away starts a new one. SIGKILL, since an inherited SIG_IGN would void SIGTERM."""
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above
        os._exit(1)
