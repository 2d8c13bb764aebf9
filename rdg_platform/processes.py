"""Local background processes that outlive the command that started them: start, find, stop.

A process started here is remembered by a :class:`ProcessRecord` (pid, create time, marker
arguments), usually kept in a :class:`PidFile`. Every later action re-checks the record against the
live process table with psutil before trusting, or signalling, that pid, so a pid the kernel has
since recycled for someone else's process is never touched. The check:

- the process exists and is not a zombie;
- when the record has ``markers`` (arguments that identify the instance, e.g. a service name and
  its state directory): every marker is an element of the process's command line. The markers
  decide, not the create time, because psutil derives create times from the boot time, which can
  drift by seconds on a VM;
- when the record has no markers, or the command line cannot be read: the create time matches the
  recorded one within :data:`CREATE_TIME_TOLERANCE_S`.

Stopping sends SIGTERM (to the process group when the process leads one, as
:func:`start_detached` arranges), waits, then SIGKILLs what is left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import psutil

CREATE_TIME_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class ProcessRecord:
    """What identifies one started process: enough to find it again and to tell it from a recycled pid."""

    pid: int
    create_time: float
    markers: tuple[str, ...] = ()
    started_at: float = field(default_factory=time.time)

    @classmethod
    def of(cls, pid: int, markers: Sequence[str] = ()) -> ProcessRecord:
        """The record of the live process ``pid`` (its create time read now)."""
        return cls(pid, psutil.Process(pid).create_time(), tuple(markers))

    def to_json(self) -> dict[str, object]:
        return {**asdict(self), "markers": list(self.markers)}

    @classmethod
    def from_json(cls, raw: Mapping[str, object]) -> ProcessRecord:
        markers = raw.get("markers") or ()
        if not isinstance(markers, (list, tuple)):
            raise ValueError(f"markers must be a list, got {markers!r}")
        started = raw.get("started_at")
        return cls(int(str(raw["pid"])), float(str(raw["create_time"])), tuple(str(m) for m in markers),
                   float(str(started)) if started is not None else 0.0)


def find(record: ProcessRecord | None) -> psutil.Process | None:
    """The live process ``record`` describes, or None if it is gone, a zombie or a recycled pid."""
    if record is None:
        return None
    try:
        proc = psutil.Process(record.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        if record.markers:
            try:
                cmdline = proc.cmdline()
            except psutil.AccessDenied:
                cmdline = None
            if cmdline is not None:
                return proc if all(m in cmdline for m in record.markers) else None
        return proc if abs(proc.create_time() - record.create_time) <= CREATE_TIME_TOLERANCE_S else None
    except psutil.Error:
        return None


def is_alive(record: ProcessRecord | None) -> bool:
    """Whether the process ``record`` describes is still running (see :func:`find`)."""
    return find(record) is not None


def why_not(record: ProcessRecord | None) -> str:
    """Why :func:`find` rejects ``record`` (for error messages)."""
    if record is None:
        return "no record"
    try:
        proc = psutil.Process(record.pid)
        return (f"pid {record.pid} status {proc.status()}, create time {proc.create_time():.2f} "
                f"(recorded {record.create_time:.2f}), markers {list(record.markers)} in {proc.cmdline()}")
    except psutil.Error as exc:
        return f"pid {record.pid} gone: {type(exc).__name__}"


class PidFile:
    """A JSON file holding one :class:`ProcessRecord`; written atomically, so readers in other
    processes never see half a record."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> ProcessRecord | None:
        """The record, or None when the file is absent or unreadable."""
        try:
            return ProcessRecord.from_json(json.loads(self.path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, record: ProcessRecord) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(record.to_json()))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def process(self) -> psutil.Process | None:
        """The live, verified process the file names (None if absent, dead or recycled)."""
        return find(self.read())


class Started(NamedTuple):
    """A process :func:`start_detached` launched: the Popen (to poll or reap it) and its record."""

    popen: subprocess.Popen[bytes]
    record: ProcessRecord


def start_detached(cmd: Sequence[str], *, log_file: Path, env: Mapping[str, str],
                   markers: Sequence[str] = (), cwd: Path | None = None,
                   pid_file: PidFile | None = None) -> Started:
    """Start ``cmd`` in its own session (it survives this process and leads its own process group)
    with stdin closed and stdout+stderr appended to ``log_file``; record it in ``pid_file``.

    ``markers`` must be elements of ``cmd``: they are what later tells this instance from a recycled
    pid (see the module docstring). ``env`` is the child's whole environment.
    """
    missing = [m for m in markers if m not in cmd]
    if missing:
        raise ValueError(f"markers {missing} are not arguments of {list(cmd)}")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        popen = subprocess.Popen(list(cmd), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                 env=dict(env), cwd=None if cwd is None else str(cwd),
                                 start_new_session=True, close_fds=True)
    try:
        record = ProcessRecord.of(popen.pid, markers)
    except psutil.NoSuchProcess:  # exited at once: keep a record that finds nothing
        record = ProcessRecord(popen.pid, 0.0, tuple(markers))
    if pid_file is not None:
        pid_file.write(record)
    return Started(popen, record)


def send(proc: psutil.Process, sig: signal.Signals, *, group: bool = True) -> None:
    """Signal ``proc``, or its whole process group when ``group`` and it leads one (a process
    :func:`start_detached` started does: its children get the signal too)."""
    try:
        if group and os.getpgid(proc.pid) == proc.pid:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
    except (ProcessLookupError, psutil.NoSuchProcess):
        pass


def stop_one(proc: psutil.Process | None, grace_s: float) -> str:
    """Stop one process (group) as :func:`stop` does; what happened, for a status line."""
    if proc is None:
        return "not running"
    outcome = stop([proc], grace_s=grace_s)[proc.pid]
    return f"stopped (pid {proc.pid})" if outcome == "stopped" else f"killed after {grace_s:.0f}s (pid {proc.pid})"


def stop(procs: Sequence[psutil.Process], *, grace_s: float, group: bool = True,
         kill_wait_s: float = 10.0) -> dict[int, str]:
    """Stop every process: SIGTERM all at once, wait up to ``grace_s`` for them together, SIGKILL
    the rest. Returns ``pid -> "stopped" | "killed"``. ``group``: see :func:`send`."""
    for p in procs:
        send(p, signal.SIGTERM, group=group)
    _gone, alive = psutil.wait_procs(list(procs), timeout=grace_s)
    for p in alive:
        send(p, signal.SIGKILL, group=group)
    if alive:
        psutil.wait_procs(alive, timeout=kill_wait_s)
    killed = {p.pid for p in alive}
    return {p.pid: "killed" if p.pid in killed else "stopped" for p in procs}
