"""`python -m bench`: the command line (bench/cli.py).

On Linux the process first re-executes itself once with glibc's allocator told to keep the memory
it frees (`KEEP_FREED_MEMORY`, unless the caller set those variables): by default glibc returns
every large tensor's memory to the kernel when it is freed, and the next allocation of that size
page-faults it back in, zeroed. The evaluation of a run allocates and frees such tensors thousands
of times: measured on the 2-core CPU machine, a quick RWS run (SBN 784-100-10, 5 seeds) took 85 s
wall, 26 s of it in the kernel, and 62 s wall, 2 s in the kernel, with these settings (a BiHM run on
the 4x4 bars: 40 s and 23 s). The settings are glibc's documented tunables; other C libraries
ignore them.
"""

import os
import sys

KEEP_FREED_MEMORY = {
    "MALLOC_MMAP_MAX_": "0",  # large blocks come from the heap, not from a fresh mmap each time
    "MALLOC_TRIM_THRESHOLD_": str(2**40),  # and the heap is not trimmed back to the kernel
}


def _reexec_keeping_freed_memory() -> None:
    if sys.platform != "linux" or all(name in os.environ for name in KEEP_FREED_MEMORY):
        return
    env = {**KEEP_FREED_MEMORY, **os.environ}  # a caller's own values win
    os.execve(sys.executable, [sys.executable, "-m", "bench", *sys.argv[1:]], env)


if __name__ == "__main__":
    _reexec_keeping_freed_memory()
    from bench.cli import main

    sys.exit(main())
