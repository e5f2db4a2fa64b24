"""Child processes of a scenario: start on loopback, wait until ready, always stop.

Every child is started in its own process group with PR_SET_PDEATHSIG, so it dies with
the scenario even when the scenario itself is killed; ``Services.stop`` (also run on
Ctrl-C, SIGTERM and errors) terminates the groups and reaps them.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from takedown.errors import TakedownError

PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def port_is_free(host: str, port: int) -> bool:
    """True if ``host:port`` can be bound right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Services:
    """The scenario's child processes."""

    log_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    children: list[Child] = field(default_factory=list)

    def start(
        self,
        name: str,
        args: Sequence[str],
        *,
        ready: Callable[[], bool],
        timeout: float = 30.0,
        python_module: str | None = "takedown",
    ) -> Child:
        """Start ``python -m takedown ARGS`` (or another module) and wait until ``ready()``."""
        argv = [sys.executable, "-m", python_module, *args] if python_module else list(args)
        log = self.log_dir / f"{name}.log"
        fh = log.open("wb")
        proc = subprocess.Popen(
            argv,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **self.env},
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        fh.close()
        child = Child(name, argv, proc, log)
        self.children.append(child)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace").strip().splitlines()[-3:]
                raise TakedownError(
                    f"{name} exited with code {proc.returncode} at start: " + " | ".join(tail)
                )
            with contextlib.suppress(Exception):
                if ready():
                    return child
            time.sleep(0.05)
        raise TakedownError(f"{name} did not become ready within {timeout:.0f} s (log: {log})")

    def check_alive(self) -> None:
        """Raise if a child has died (its last log lines say why)."""
        for c in self.children:
            if c.proc.poll() is not None:
                tail = c.log.read_text(errors="replace").strip().splitlines()[-3:]
                raise TakedownError(
                    f"{c.name} died (exit {c.proc.returncode}): " + " | ".join(tail)
                )

    def stop(self, grace: float = 5.0) -> None:
        """Terminate every child's process group; kill what is left after ``grace``."""
        for c in reversed(self.children):
            if c.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for c in self.children:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                c.proc.wait(remaining)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(c.proc.pid, signal.SIGKILL)
                c.proc.wait()
        self.children.clear()


def http_ready(url: str) -> Callable[[], bool]:
    """A readiness probe: ``url`` answers (any status below 500)."""

    def probe() -> bool:
        return httpx.get(url, timeout=1.0).status_code < 500

    return probe


def tcp_ready(host: str, port: int) -> Callable[[], bool]:
    def probe() -> bool:
        with socket.create_connection((host, port), timeout=1.0):
            return True

    return probe


def install_signal_handlers() -> Callable[[], None]:
    """SIGTERM behaves like Ctrl-C (so the driver's cleanup runs); returns a restorer."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    return lambda: signal.signal(signal.SIGTERM, previous)


def wait_forever() -> None:
    """Sleep until interrupted (``--keep-running``: the services stay up)."""
    while True:
        time.sleep(3600)


def poll_until(
    done: Callable[[], bool], timeout: float, check: Callable[[], None] | None, failure: str
) -> None:
    """Poll ``done`` every 50 ms until true; TakedownError(``failure``) after ``timeout``
    seconds. ``check`` runs between polls (``Services.check_alive``: fail at once when a
    service died)."""
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TakedownError(failure)
        if check is not None:
            check()
        time.sleep(0.05)
