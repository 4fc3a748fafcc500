"""`python -m bench` re-executes itself once with glibc's allocator keeping freed memory (bench/__main__.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import __main__ as entry


class Exec(Exception):
    pass


def _capture(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> tuple | None:
    monkeypatch.setattr(os, "environ", env)
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "argv", ["/x/bench/__main__.py", "run", "--spec", "{}"])

    def fake_execve(path, argv, env):
        raise Exec(path, argv, env)

    monkeypatch.setattr(os, "execve", fake_execve)
    try:
        entry._reexec_keeping_freed_memory()
    except Exec as call:
        return call.args
    return None


def test_reexecs_once_with_the_allocator_settings_and_the_same_arguments(monkeypatch):
    path, argv, env = _capture(monkeypatch, {"PATH": "/bin", "MALLOC_MMAP_MAX_": "7"})
    assert argv == [sys.executable, "-m", "bench", "run", "--spec", "{}"]
    assert env["MALLOC_MMAP_MAX_"] == "7"  # the caller's own value wins
    assert env["MALLOC_TRIM_THRESHOLD_"] == entry.KEEP_FREED_MEMORY["MALLOC_TRIM_THRESHOLD_"]
    assert env["PATH"] == "/bin"
    # the re-executed process has every variable set, so it does not re-execute again
    assert _capture(monkeypatch, env) is None


def test_the_command_line_still_works_after_the_reexec():
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, "-m", "bench", "--help"], env=env, capture_output=True, text=True, check=True)
    assert "usage: python -m bench" in out.stdout
