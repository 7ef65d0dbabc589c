"""Node processes of a cluster folder: starting them, waiting for them, stopping them.

Theory of operation
-------------------
This module knows processes, pid files, logs and ``/proc``; which nodes a folder
holds, and where, is ``runtime/cluster.py``'s business, which calls in here for
``cluster up`` and ``cluster down``.  Each node folder may hold ``node.pid`` (the
process id, one line) and ``node.log`` (the node's standard output and error,
appended to).

* **Starting** (:func:`start`).  Each node runs as its own process
  (``COMMAND... CONFIG``, by default ``python cli.py run CONFIG``) in a new session,
  so that closing the terminal or ``Ctrl-C`` in it does not reach the nodes, with
  standard output and error appended to ``node.log`` after a marker line (so
  :func:`log_tail` shows only the latest start) and its pid written to ``node.pid``.
* **Waiting.**  Every node's ``GET /v1/status`` (on its API address, never through
  an HTTP proxy) is polled until each answers 200 with its own member name.  If a
  node exits first, or the deadline passes, every process started is stopped again
  and :class:`StartError` names the node with the tail of its log.
* **Recognising our nodes** (:func:`running`).  A pid from a pid file counts only if
  the process is alive (our exited children are reaped, zombies are dead) *and* its
  command line (``/proc/PID/cmdline``) contains the node's ``node.toml`` path, so a
  pid reused by an unrelated process is never touched.  Without ``/proc`` the pid
  file is trusted.
* **Stopping** (:func:`stop`).  SIGTERM to every recognised node, a wait up to a
  deadline, SIGKILL to stragglers; the pid files of the dead are removed, and so are
  stale ones (the process is gone or is someone else's).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

if TYPE_CHECKING:
    from .cluster import NodeEntry

PID_FILE = "node.pid"
LOG_FILE = "node.log"
LOG_TAIL_LINES = 20
_LOG_MARK = "==== evledger cluster up: starting "


class StartError(Exception):
    """A node did not come up; every process ``up`` had started has been stopped (exit 3)."""

    def __init__(self, node: str, problem: str, log: Path, tail: Sequence[str]):
        super().__init__("%s did not start: %s" % (node, problem))
        self.node, self.problem, self.log, self.tail = node, problem, log, tuple(tail)


@dataclass
class StopReport:
    """What :func:`runtime.cluster.down` did, by node name."""

    stopped: list[str]  # exited after SIGTERM
    killed: list[str]  # needed SIGKILL
    not_running: list[str]  # no pid file, or a stale one (removed)
    survivors: list[str]  # still alive after SIGKILL (pid file kept)

    def to_doc(self) -> dict:
        return {"stopped": self.stopped, "killed": self.killed, "not_running": self.not_running,
                "survivors": self.survivors}


def write_text(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` atomically and durably: a temporary file, fsync, rename."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- pid files and /proc


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or ``None`` if it cannot be read (gone, or not ours to read)."""
    try:
        raw = Path("/proc/%d/cmdline" % pid).read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8", "surrogateescape").split("\x00")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; reaps it first if it is our exited child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat_text = Path("/proc/%d/stat" % pid).read_text()
        if stat_text.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False  # a zombie: exited, waiting for its parent to reap it
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(pid: int, config: Path) -> bool:
    """Whether ``pid`` is alive and is the node started with ``config`` (its command line names it)."""
    if not _alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():  # no /proc (not Linux): trust the pid file
        return True
    args = _cmdline(pid)
    return args is not None and str(config) in args


def _read_pid(path: Path) -> int | None:
    """The pid in ``path``; ``None`` if there is no such file, ``-1`` if it is unreadable or not a pid."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    return int(text) if text.isascii() and text.isdigit() and 0 < int(text) < 2 ** 31 else -1


def running(configs: Iterable[Path]) -> list[tuple[str, int]]:
    """(name, pid) of every node, given by its ``node.toml`` path, whose pid file names a live process of ours.

    A node's folder is the folder of its configuration, and its name is that folder's name.
    """
    out = []
    for config in configs:
        folder = config.parent
        pid = _read_pid(folder / PID_FILE)
        if pid and pid > 0 and _ours(pid, config):
            out.append((folder.name, pid))
    return out


# --------------------------------------------------------------------------- starting


@dataclass
class _Started:
    entry: NodeEntry
    proc: subprocess.Popen
    log: Path


def default_command() -> list[str]:
    """How a node process is started, without its CONFIG argument: ``python .../cli.py run``.

    The path of ``cli.py`` is used rather than the ``evledger`` console script (which
    may not be on ``PATH``) or ``-m cli`` (which depends on the working directory).
    """
    spec = importlib.util.find_spec("cli")
    if spec is not None and spec.origin:
        return [sys.executable, spec.origin, "run"]
    return [sys.executable, "-m", "cli", "run"]


def start(entries: Sequence[NodeEntry], command: Sequence[str] | None, timeout: float,
          say: Callable[[str], None]) -> list[int]:
    """Start a process for each node and wait until each answers; return their pids, in order.

    Raises :class:`StartError` when a node exits or does not answer within ``timeout``
    seconds; then, as on any other exception, every process started is stopped first.
    """
    argv = list(command) if command is not None else default_command()
    started: list[_Started] = []
    try:
        for entry in entries:
            started.append(_spawn(entry, argv))
            say("started %s (pid %d), log %s" % (entry.name, started[-1].proc.pid, started[-1].log))
        say("waiting up to %g s for %d node%s to answer" % (timeout, len(started), "" if len(started) == 1 else "s"))
        _wait_ready(started, time.monotonic() + timeout, timeout)
    except BaseException:
        _stop([(s.entry.config.parent, s.proc.pid, s.proc) for s in started], 10.0)
        raise
    return [s.proc.pid for s in started]


def _spawn(entry: NodeEntry, argv: list[str]) -> _Started:
    folder = entry.config.parent
    log = folder / LOG_FILE
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = argv + [str(entry.config)]
    with open(log, "ab") as out:
        out.write(("\n%s%s at %s: %s ====\n" % (_LOG_MARK, entry.name, time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                 " ".join(args))).encode())
        out.flush()
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                    env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise StartError(entry.name, "cannot run %s: %s" % (args[0], exc.strerror or exc), log, []) from None
    write_text(folder / PID_FILE, "%d\n" % proc.pid, 0o644)
    return _Started(entry, proc, log)


def _status_ok(url: str, name: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    try:
        with opener.open(url, timeout=1.0) as resp:
            if resp.status != 200:
                return False
            doc = json.loads(resp.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(doc, dict) and doc.get("node") == name


def _wait_ready(started: list[_Started], deadline: float, timeout: float) -> None:
    waiting = list(started)
    while waiting:
        for s in list(waiting):
            url = s.entry.api.rstrip("/") + "/v1/status"
            code = s.proc.poll()
            if code is not None:
                raise StartError(s.entry.name, "the process exited with code %d before answering on %s"
                                 % (code, url), s.log, log_tail(s.log))
            if _status_ok(url, s.entry.name):
                waiting.remove(s)
        if not waiting:
            return
        if time.monotonic() > deadline:
            s = waiting[0]
            raise StartError(s.entry.name, "no answer from %s within %g s" % (s.entry.api.rstrip("/") + "/v1/status",
                             timeout), s.log, log_tail(s.log))
        time.sleep(0.1)


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``log`` written since the last start by :func:`start`."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    mark = text.rfind(_LOG_MARK)
    if mark >= 0:
        text = text[mark:].split("\n", 1)[1] if "\n" in text[mark:] else ""
    return [line for line in text.splitlines() if line.strip()][-lines:]


# --------------------------------------------------------------------------- stopping


def stop(configs: Iterable[Path], timeout: float) -> StopReport:
    """Stop the nodes, given by their ``node.toml`` paths, recorded in pid files (SIGTERM, SIGKILL after ``timeout`` s).

    A pid file that names no live process of ours is stale and is removed; a node
    folder with a configuration and no such process is reported as not running.
    """
    targets, idle = [], []
    for config in configs:
        folder = config.parent
        pid = _read_pid(folder / PID_FILE)
        if pid is not None and pid > 0 and _ours(pid, config):
            targets.append((folder, pid, None))
            continue
        if pid is not None:
            (folder / PID_FILE).unlink(missing_ok=True)  # stale: the process is gone or is someone else's
        if config.exists():
            idle.append(folder.name)
    stopped, killed, survivors = _stop(targets, timeout)
    return StopReport(stopped, killed, idle, survivors)


def _stop(targets: list[tuple[Path, int, subprocess.Popen | None]],
          timeout: float) -> tuple[list[str], list[str], list[str]]:
    """SIGTERM every target, wait until ``timeout``, SIGKILL the rest; remove the pid files of the dead."""
    def alive(pid: int, proc: subprocess.Popen | None) -> bool:
        return proc.poll() is None if proc is not None else _alive(pid)

    def signal_all(group: list, sig: int) -> None:
        for _, pid, proc in group:
            if alive(pid, proc):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def wait(group: list, until: float) -> list:
        while True:
            group = [t for t in group if alive(t[1], t[2])]
            if not group or time.monotonic() > until:
                return group
            time.sleep(0.05)

    signal_all(targets, signal.SIGTERM)
    left = wait(targets, time.monotonic() + timeout)
    signal_all(left, signal.SIGKILL)
    survivors = wait(left, time.monotonic() + 5.0)
    still_alive = {folder for folder, _, _ in survivors}
    for folder, _, _ in targets:
        if folder not in still_alive:
            (folder / PID_FILE).unlink(missing_ok=True)
    needed_kill = {folder for folder, _, _ in left}
    stopped = [folder.name for folder, _, _ in targets if folder not in needed_kill]
    killed = [folder.name for folder, _, _ in left if folder not in still_alive]
    return stopped, killed, [folder.name for folder in sorted(still_alive)]
