"""One process at a time per run: an exclusive `fcntl.flock` on a lock file.

Two `cdbench train` processes of the same run would both train and log every MLflow point
twice; two `cdbench evaluate` processes of one run would race to write the same files. Each
takes `run_lock(<lock file>, <what>)` first: the lock is an `flock` on the open file, which
the kernel releases when the holder dies (even by kill -9), so a crashed holder never leaves
the run stuck; nothing has to be cleaned up by hand. The holder writes its PID and command
into the file, so that a second process is refused with a message naming it.

The lock file is never deleted: removing it while another process opens it would let two
holders lock two different files. A leftover file is harmless (only the flock counts).
`flock` works on local file systems; on NFS, Linux emulates it with byte-range locks.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmark.errors import CdbenchError


def _holder(path: Path, tries: int = 20) -> str:
    """What the holder wrote into `path` ("PID <pid>: <command>"). A holder that took the lock
    a moment ago may not have written it yet (or the file still names a dead former holder):
    read again for up to about a second before saying so."""
    text = ""
    for _ in range(tries):
        try:
            text = path.read_text(errors="replace").strip()
        except OSError:
            text = ""
        if text and _alive(text):
            return text
        time.sleep(0.05)
    return text or "a process that has not written its PID yet"


def _alive(text: str) -> bool:
    """Whether the PID of a "PID <pid>: ..." line is a live process (True when unreadable)."""
    try:
        pid = int(text.split()[1].rstrip(":"))
    except (IndexError, ValueError):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextmanager
def run_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on `path` while the block runs, or refuse at once.

    Args:
        path: The lock file (created with its folder when missing; never deleted).
        what: What the holder does, for the message (e.g. "cdbench train bsfnet-sisb-cdd").

    Raises:
        CdbenchError: Another process (or another lock in this process) holds `path`; the
            message names the holder's PID and command.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 -- held open for the whole block
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CdbenchError(
                f"{path}: locked by {_holder(path)}; only one '{what}' may run at a time. "
                f"Wait for it to end, or stop it (`kill <PID>`); the lock is released when "
                f"its holder exits, even if killed"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"PID {os.getpid()}: {what} ({' '.join(sys.argv) or 'python'})\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()  # no stale PID for the next reader
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()
