"""Reading a register file in a second process while this one writes what it read.

A national register's first sync is about as much parsing (URLs, IDNA, keys, checks) as
database writing; on two cores the two overlap. The reading process is forked once the
pass has read what it needs from the database (the live entries, the platforms), so it
never touches the database: it sends each batch of rows to be written here through a
pipe, and at the end what it found. The writes stay in this process's one transaction, so
a kill of either process leaves the previous state.
"""

from __future__ import annotations

import marshal
import multiprocessing
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

Send = Callable[[Any], None]

_CAN_FORK = hasattr(os, "fork") and sys.platform.startswith("linux")


def can_fork() -> bool:
    """True where a reading process can start as a copy of this one (fork, Linux)."""
    return _CAN_FORK


def in_reading_process(work: Callable[[Send], T], take: Callable[[Any], None]) -> T:
    """Run ``work(send)`` in a forked process; give each object it sends to ``take`` here,
    in order, and return what ``work`` returns. An exception in ``work`` is raised here
    (a RuntimeError naming it if it cannot be pickled); the process is ended whatever
    happens here."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(work, sender), daemon=True)
    process.start()
    sender.close()
    try:
        while True:
            try:
                kind, payload = _loads(receiver.recv_bytes())
            except EOFError:
                raise RuntimeError(
                    f"the process reading the file ended unexpectedly (exit {process.exitcode})"
                ) from None
            if kind == "item":
                take(payload)
            elif kind == "done":
                return payload  # type: ignore[no-any-return]
            else:
                raise payload
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()
        process.join()


def _dumps(message: tuple[str, Any]) -> bytes:
    """A message as bytes: marshal where it can (batches of rows are plain tuples of str,
    int and None, and marshal is several times faster than pickle both ways), else pickle."""
    try:
        return marshal.dumps(message)
    except ValueError:  # an object marshal does not know (a datetime, an exception)
        return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


def _loads(data: bytes) -> tuple[str, Any]:
    # a pickle starts with its PROTO opcode, a marshalled tuple never does
    if data[:1] == pickle.PROTO:
        return pickle.loads(data)  # type: ignore[no-any-return]
    return marshal.loads(data)  # type: ignore[no-any-return]


def _child(work: Callable[[Send], T], sender: Any) -> None:
    def send(item: Any) -> None:
        sender.send_bytes(_dumps(("item", item)))

    try:
        sender.send_bytes(_dumps(("done", work(send))))
    except BrokenPipeError:
        pass  # the writing process is gone: nothing to tell
    except BaseException as exc:  # handed to the writing process
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{exc.__class__.__name__}: {exc}")
        sender.send_bytes(_dumps(("error", exc)))
    finally:
        sender.close()
