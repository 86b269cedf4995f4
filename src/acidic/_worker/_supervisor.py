"""``acidic worker --processes N``: one command that runs N worker processes.

Executor threads share one interpreter lock: past a few executors, a worker process is
bound by its own CPU. Several processes use several cores, as Celery's prefork pool or
Dramatiq's ``--processes`` do. The parent here is only a supervisor: it starts N
``acidic worker`` children, restarts one that dies, and relays stop requests.

Signals reach the parent only in effect. Children ignore SIGTERM and SIGINT, because a
terminal's Ctrl-C and systemd's ``KillMode=control-group`` signal every process of the
group: a child that acted on those *and* on the parent's relay would count two signals
and stop at once instead of gracefully. The parent relays over each child's stdin:
``stop`` (graceful), then ``now`` (at once). A child whose stdin reaches end of file
(the parent died, even by SIGKILL) stops gracefully, so no worker outlives its
supervisor unnoticed.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import FrameType

from ._worker import EXIT_FORCED, EXIT_OK

__all__ = ["STOP", "STOP_NOW", "Supervisor", "obey_supervisor"]

log = logging.getLogger("acidic.worker")

#: The lines a supervisor writes to a child's stdin.
STOP = b"stop\n"
STOP_NOW = b"now\n"

#: A child that lived at least this long before dying is restarted after the shortest
#: delay; one that dies sooner (a crash loop: the database is down, the code is broken)
#: waits twice as long as the last time, up to MAX_RESTART_DELAY.
HEALTHY_AFTER = 10.0
MIN_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
#: Seconds the supervisor waits beyond the children's own grace period before it
#: kills those still running.
KILL_MARGIN = 10.0


@dataclass
class _Child:
    """One worker process slot: the process in it, and when to restart it."""

    index: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float = MIN_RESTART_DELAY
    restart_at: float | None = None
    exit_codes: list[int] = field(default_factory=list)

    def send(self, line: bytes) -> None:
        if self.proc is None or self.proc.poll() is not None or self.proc.stdin is None:
            return
        # It may have exited meanwhile (a broken pipe), or its stdin be closed.
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.proc.stdin.write(line)
            self.proc.stdin.flush()


class Supervisor:
    """Runs ``processes`` copies of the worker command ``argv`` until stopped."""

    def __init__(self, argv: Sequence[str], processes: int, grace: float) -> None:
        self.argv = list(argv)
        self.grace = grace
        self.children = [_Child(i) for i in range(processes)]
        #: Signals received (appended by the handler), and how many were logged.
        self._signal_names: list[str] = []
        self._signals_logged = 0
        self._stop_sent = 0  # 0 nothing, 1 "stop", 2 "now"

    def run(self) -> int:
        """Supervise until a signal stops every child; the exit code (0: all stopped
        gracefully)."""
        # A signal wakes the loop through this socket (Python writes to it as the signal
        # arrives). The handler itself only counts: it runs between two bytecodes of the
        # loop, and taking a lock there (an Event's, a logging handler's) can deadlock
        # with the loop holding it.
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        wake_w.setblocking(False)
        previous_wakeup = signal.set_wakeup_fd(wake_w.fileno())
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        try:
            return self._supervise(wake_r)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            wake_r.close()
            wake_w.close()

    def _supervise(self, wake: socket.socket) -> int:
        log.info(
            "supervising %d worker processes",
            len(self.children),
            extra={"processes": len(self.children), "pid": os.getpid()},
        )
        for child in self.children:
            self._start(child)
        stop_deadline: float | None = None
        while True:
            self._log_signals()
            if self._signals and self._stop_sent < min(self._signals, 2):
                self._stop_sent = min(self._signals, 2)
                line = STOP if self._stop_sent == 1 else STOP_NOW
                for child in self.children:
                    child.send(line)
                if stop_deadline is None:
                    stop_deadline = time.monotonic() + self.grace + KILL_MARGIN
            now = time.monotonic()
            for child in self.children:
                self._look_after(child, now)
            if self._signals and all(c.proc is None for c in self.children):
                break
            if stop_deadline is not None and now > stop_deadline:
                self._kill_remaining()
                break
            if select.select([wake], [], [], 0.1)[0]:
                with contextlib.suppress(BlockingIOError):
                    wake.recv(4096)
        codes = [c.exit_codes[-1] for c in self.children if c.exit_codes]
        forced = self._stop_sent > 1 or any(code != EXIT_OK for code in codes)
        log.info("worker processes stopped", extra={"exit_codes": codes})
        return EXIT_FORCED if forced else EXIT_OK

    @property
    def _signals(self) -> int:
        return len(self._signal_names)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signal_names.append(signal.Signals(signum).name)

    def _log_signals(self) -> None:
        while self._signals_logged < self._signals:
            self._signals_logged += 1
            name = self._signal_names[self._signals_logged - 1]
            if self._signals_logged == 1:
                log.info("signal %s: stopping the worker processes gracefully", name)
            else:
                log.warning("second signal %s: stopping the worker processes at once", name)

    def _start(self, child: _Child) -> None:
        child.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE)
        child.started = time.monotonic()
        child.restart_at = None
        log.info(
            "worker process %d started (slot %d)",
            child.proc.pid,
            child.index,
            extra={"pid": child.proc.pid, "slot": child.index},
        )

    def _look_after(self, child: _Child, now: float) -> None:
        if child.proc is not None:
            code = child.proc.poll()
            if code is None:
                return
            _close(child.proc)
            child.exit_codes.append(code)
            pid, child.proc = child.proc.pid, None
            if self._signals:
                return  # stopping: it is done
            lived = now - child.started
            child.delay = (
                MIN_RESTART_DELAY
                if lived >= HEALTHY_AFTER
                else min(child.delay * 2, MAX_RESTART_DELAY)
            )
            child.restart_at = now + child.delay
            log.error(
                "worker process %d exited with %s after %.1f s; restarting in %.1f s",
                pid,
                code,
                lived,
                child.delay,
                extra={"pid": pid, "exit_code": code, "slot": child.index},
            )
        elif child.restart_at is not None and now >= child.restart_at and not self._signals:
            self._start(child)

    def _kill_remaining(self) -> None:
        for child in self.children:
            if child.proc is not None and child.proc.poll() is None:
                log.warning("worker process %d did not stop: killing it", child.proc.pid)
                child.proc.kill()
                child.exit_codes.append(child.proc.wait())
                _close(child.proc)
                child.proc = None


def _close(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.close()


def obey_supervisor(stop: Callable[[], None]) -> None:
    """In a supervised child: ignore SIGTERM and SIGINT (the supervisor relays them)
    and follow the supervisor's lines on stdin; end of file stops gracefully too."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def listen() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader
        # holds its lock, and the interpreter aborts when it shuts down around it.
        fd = sys.stdin.fileno()
        pending = b""
        while chunk := os.read(fd, 1024):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                if line + b"\n" == STOP_NOW:
                    log.warning("supervisor: stopping at once")
                    logging.shutdown()
                    os._exit(EXIT_FORCED)
                if line + b"\n" == STOP:
                    log.info("supervisor: stopping gracefully")
                    stop()
        log.info("supervisor gone: stopping gracefully")
        stop()

    threading.Thread(target=listen, name="acidic-supervisor", daemon=True).start()
