"""Device choice. `auto` means CUDA when present. On a multi-GPU host Snakemake's `gpu` resource
bounds how many jobs run at once but assigns no device ids, so each job claims a free GPU slot
itself with an exclusive lock file per GPU (held until the process exits)."""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

import torch

_held_lock = None  # keeps the claimed slot's lock file open for the life of the process


def _claim_gpu_slot(n_gpus: int) -> int:
    global _held_lock
    lock_dir = Path(os.environ.get("CLAIMBENCH_GPU_LOCKS", tempfile.gettempdir()))
    while True:
        for i in range(n_gpus):
            f = open(lock_dir / f"claimbench-gpu{i}.lock", "w")
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.close()
                continue
            _held_lock = f
            return i
        time.sleep(1.0)  # more jobs than GPUs (no --resources gpu=N given): wait for a free one


def resolve(device: str = "auto") -> torch.device:
    """'auto' -> a free CUDA device if any, else CPU; anything else is passed to torch.device."""
    if device != "auto":
        return torch.device(device)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    n = torch.cuda.device_count()
    return torch.device(f"cuda:{_claim_gpu_slot(n) if n > 1 else 0}")
