"""rdg_platform.processes on real processes: a pid file is trusted only for the process it recorded,
and stop escalates from SIGTERM to SIGKILL."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil

from rdg_platform.processes import PidFile, ProcessRecord, find, is_alive, start_detached, stop
from tests.support.poll import poll_until

SLEEPER = [sys.executable, "-c", "import sys, time; time.sleep(60)", "rdg-test-marker"]
STUBBORN = [sys.executable, "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); "
            "time.sleep(60)"]


def _wait_for(path: Path, text: str, timeout_s: float = 10.0) -> None:
    poll_until(lambda: text in (path.read_text() if path.exists() else ""), what=f"{text!r} in {path}",
               timeout_s=timeout_s, interval_s=0.05)


def test_pid_file_finds_its_process_and_nothing_else(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "run" / "sleeper.json")
    started = start_detached(SLEEPER, log_file=tmp_path / "sleeper.log", env=dict(os.environ),
                             markers=["rdg-test-marker"], pid_file=pid_file)
    try:
        rec = pid_file.read()
        assert rec == started.record and rec is not None and rec.markers == ("rdg-test-marker",)
        # until the child has exec'd, its command line is still the parent's (no marker yet)
        proc = poll_until(pid_file.process, lambda p: p is not None, what="the started process", timeout_s=10)
        assert proc is not None and proc.pid == started.popen.pid
        assert os.getpgid(proc.pid) == proc.pid  # its own session and process group
        # the same pid recorded for another instance (other markers) is not ours
        assert find(ProcessRecord(rec.pid, rec.create_time, ("rdg-other-instance",))) is None
        # without markers, the create time decides
        assert find(ProcessRecord(rec.pid, rec.create_time)) is not None
        assert find(ProcessRecord(rec.pid, rec.create_time - 3600)) is None
        assert stop([proc], grace_s=10) == {proc.pid: "stopped"}
        started.popen.wait(5)
        assert pid_file.process() is None and not is_alive(rec)
    finally:
        if started.popen.poll() is None:
            started.popen.kill()
            started.popen.wait()


def test_stop_kills_what_ignores_sigterm(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    started = start_detached(STUBBORN, log_file=log, env=dict(os.environ))
    try:
        _wait_for(log, "ready")
        proc = find(started.record)
        assert proc is not None
        t = time.monotonic()
        assert stop([proc], grace_s=0.5) == {proc.pid: "killed"}
        assert time.monotonic() - t < 5
        assert find(started.record) is None
    finally:
        if started.popen.poll() is None:
            started.popen.kill()
            started.popen.wait()


def test_missing_or_garbled_pid_file_and_zombie(tmp_path: Path) -> None:
    pid_file = PidFile(tmp_path / "x.json")
    assert pid_file.read() is None and pid_file.process() is None
    pid_file.path.write_text("{not json")
    assert pid_file.read() is None
    started = start_detached([sys.executable, "-c", "pass"], log_file=tmp_path / "quick.log", env=dict(os.environ))
    deadline = time.monotonic() + 10
    while psutil.Process(started.popen.pid).status() != psutil.STATUS_ZOMBIE:  # exited, not reaped yet
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert find(started.record) is None
    started.popen.wait()
