"""Process memory: glibc's allocator set up for large, short-lived tensors, and the resource
figures (peak resident memory, minor page faults, system time) that show what it costs.

A vmapped meta-batch makes single intermediates of tens of megabytes. glibc serves blocks that
large with ``mmap`` and hands them back to the kernel on ``free``, so every Hessian-vector
product of MAML-TRPO, and every second-order Omniglot step, faults its memory in again: system
time and page faults grow with the meta-batch. :func:`tune_allocator` keeps such blocks in the
heap for reuse instead. It changes where memory comes from, never what is computed.
"""

from __future__ import annotations

import ctypes
import resource
import sys
from dataclasses import dataclass

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

_tuned = False


def tune_allocator() -> bool:
    """Serve every allocation from the heap (no ``mmap``) and never trim the heap's top, so
    freed memory is reused without faulting it in again; returns whether glibc took the
    settings (False on other C libraries and platforms, where this is a no-op).

    The process keeps the memory of its largest step until it exits, which is what a training
    run reuses every iteration. Idempotent; ``metarl-train``, ``metarl-evaluate`` and the
    benchmarks call it at start; call it yourself when you drive the library directly.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _tuned = bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))
    return _tuned


def resident_mb() -> float:
    """This process's resident memory now (Linux ``/proc``; elsewhere its peak so far)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:
        return Usage.now().peak_rss_mb


@dataclass(frozen=True)
class Usage:
    """Resource figures of this process so far (``resource.getrusage``)."""

    peak_rss_mb: float
    minor_faults: int
    system_seconds: float
    user_seconds: float

    @classmethod
    def now(cls) -> Usage:
        r = resource.getrusage(resource.RUSAGE_SELF)
        kb = 1024 if sys.platform != "darwin" else 1  # macOS reports bytes
        return cls(r.ru_maxrss * kb / 2**20, r.ru_minflt, r.ru_stime, r.ru_utime)

    def since(self, earlier: Usage) -> Usage:
        """Faults and CPU times between ``earlier`` and this reading (peak: this one's)."""
        return Usage(self.peak_rss_mb, self.minor_faults - earlier.minor_faults,
                     self.system_seconds - earlier.system_seconds,
                     self.user_seconds - earlier.user_seconds)
