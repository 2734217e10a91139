"""Publish outputs whole: a reader sees the previous complete output or the new one, never a mix.

Every command writes its outputs into a staging folder beside their destination (the same file
system), then renames them into place; a rename within one file system is atomic. Two shapes:

- `staging_dir(out)`: one folder replaced as a whole (a prepared dataset, `cdbench prepare` and
  `cdbench synth`).
- `StagedOutputs`: a set of files and folders spread over several folders, e.g. `cdbench
  evaluate`'s `reports/{metrics,curves,per_image,predictions}/<run>.*`
  (each its own DVC output, so they cannot live in one folder). POSIX has no rename of several
  paths at once, so the set is swapped in by a short sequence of renames, with one file of the
  set (`last`: the one readers look for first, e.g. the metrics file) taken away first and
  put back last. The guarantee is in `StagedOutputs`' docstring.

Signals that ask a process to stop (Ctrl-C, SIGTERM, SIGHUP) are held while the renames run and
take effect right after them; only SIGKILL or a power cut can land inside the sequence.

Scratch folders are named `.<name>.<kind>-<pid>` beside what they are for, so a run killed
outright (SIGKILL) leaves folders that the next run recognises as its own, and removes once
their process is gone (`remove_stale_scratch`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

from tqdm import tqdm

from benchmark.errors import CdbenchError

_SCRATCH = re.compile(r"^\.(?P<out>.+)\.(?P<kind>partial|old|raw)-(?P<pid>[0-9]+)(?:-.*)?$")
"""Folders a run keeps beside its output while it works (`staging_dir`'s and `StagedOutputs`'
`.partial-`, `staging_dir`'s `.old-`, `scratch_dir`'s `.<kind>-`), each named after the process
that made it."""

_HELD_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)
"""The signals held while outputs are renamed into place (`_signals_held`)."""


def scratch_dir(out: Path, kind: str = "raw") -> Path:
    """A new folder beside `out` for intermediate files, named after this process.

    The caller removes it; if the process is killed first, the next run's
    `remove_stale_scratch` does.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.{kind}-{os.getpid()}-", dir=out.parent))


def process_exists(pid: int) -> bool:
    """Whether a process of this id exists (any user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def remove_stale_scratch(out: Path) -> list[Path]:
    """Delete the scratch folders that a killed run (SIGKILL, power loss) left beside `out`.

    A run removes its own scratch folders when it ends, even on an error or Ctrl-C; only a run
    that could not clean up leaves them (an extracted CDD is several GB). Folders of a process
    that still exists (a run going on at the same time) are left alone. A run killed between
    the two renames of `staging_dir` leaves no `out` and the previous output in `.old-<pid>`:
    that one is put back.

    Returns:
        The folders deleted.
    """
    out = Path(out)
    if not out.parent.is_dir():
        return []
    removed = []
    for path in sorted(out.parent.iterdir()):
        match = _SCRATCH.match(path.name)
        if match is None or match["out"] != out.name or not path.is_dir():
            continue
        if process_exists(int(match["pid"])):
            continue
        if match["kind"] == "old" and not out.exists():
            tqdm.write(f"{path}: the previous output, left by an interrupted run; restoring it")
            path.rename(out)
            continue
        tqdm.write(f"{path}: left by an interrupted run (process {match['pid']}); deleting it")
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


@contextmanager
def staging_dir(out: Path) -> Iterator[Path]:
    """Yield an empty folder beside `out`; on success it replaces `out`, on failure it is removed.

    Readers therefore see either the previous complete folder or the new complete one, never
    a half-written folder under the final name. Scratch folders of earlier killed runs are
    cleaned up first (`remove_stale_scratch`). `out` is made absolute first, so that `.` or
    `x/..` name a real folder beside which to stage (the caller decides whether `out` may be
    replaced at all: `benchmark.data.layout.check_replaceable`). If a rename fails, the
    previous folder is put back and the staging folder removed.
    """
    out = Path(os.path.abspath(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_scratch(out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    try:
        yield staging
        os.sync()  # the new files reach the disk before they replace the old ones
        with _signals_held():
            moved = out.exists()
            if moved:
                out.rename(old)
            try:
                staging.rename(out)
            except BaseException:
                if moved:
                    old.rename(out)
                raise
            _fsync_dir(out.parent)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)


class StagedOutputs:
    """Stage a set of outputs, then publish them together; a context manager.

    `targets` maps a key to each output's final path (a file or a folder); `path(key)` gives
    where to write it meanwhile, inside one staging folder `.<label>.partial-<pid>` in the
    deepest folder holding every target (so on the same file system: checked before anything
    is replaced). `publish()` renames every staged output into place; leaving the block
    removes the staging folder, so an error before `publish()` publishes nothing.

    The guarantee, for a reader of the targets:
    - An exception, or Ctrl-C / SIGTERM / SIGHUP, before `publish()`: the previous set is left
      exactly as it was. The same signals during `publish()` are held until it has finished:
      the new set is complete, then the signal takes effect.
    - SIGKILL or a power cut before `publish()`: the previous set is intact; the staging
      folder left behind is removed by the next run with the same label.
    - SIGKILL or a power cut during `publish()` (a handful of renames): the target `last` is
      absent (it is taken away first and put in place last), and each other target is wholly
      the previous one, wholly the new one, or absent (a folder between being moved aside and
      the new one moved in). So the only partial state is a set without `last`, which readers
      take as "not produced" (for `cdbench evaluate`, a run without its metrics file is not
      evaluated; DVC sees the output missing and runs the stage again). Staged files are
      flushed to disk (fsync) before the first rename, so a power cut cannot publish an
      empty or truncated file.
    - A target the new set lacks is not allowed: `publish()` refuses before renaming anything.
    """

    def __init__(self, targets: Mapping[str, Path], last: str, label: str) -> None:
        if last not in targets:
            raise ValueError(f"last={last!r} is not one of the targets {sorted(targets)}")
        self.targets = {key: Path(os.path.abspath(path)) for key, path in targets.items()}
        self.last = last
        self.label = label
        self.home = Path(os.path.commonpath([path.parent for path in self.targets.values()]))
        self.root = self.home / f".{label}.partial-{os.getpid()}"
        """The staging folder; a caller may also keep files of its own there until the end."""

    def __enter__(self) -> StagedOutputs:
        self.home.mkdir(parents=True, exist_ok=True)
        remove_stale_scratch(self.home / self.label)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def path(self, key: str) -> Path:
        """Where to write the output `key` (its parent folder exists; the path does not)."""
        staged = self.root / self.targets[key].relative_to(self.home)
        staged.parent.mkdir(parents=True, exist_ok=True)
        return staged

    def publish(self) -> None:
        """Rename every staged output into place, `last` last (see the class docstring).

        Raises:
            ValueError: an output was not staged (nothing is replaced).
            CdbenchError: a target's folder is on another file system than the staging
                folder, so it cannot be replaced by a rename (nothing is replaced).
        """
        staged = {key: self.path(key) for key in self.targets}
        missing = [key for key, path in staged.items() if not os.path.lexists(path)]
        if missing:
            raise ValueError(f"{self.root}: nothing was staged for {missing}")
        device = self.root.stat().st_dev
        for target in self.targets.values():
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.parent.stat().st_dev != device:
                raise CdbenchError(
                    f"{target.parent}: on another file system than {self.home}, so {target.name} "
                    f"cannot be replaced in one step; make {target.parent} a folder of "
                    f"{self.home}'s file system (not a link or mount to another disk)"
                )
        for path in staged.values():
            _fsync_tree(path)
        aside = self.root / ".previous"
        aside.mkdir()
        order = [key for key in self.targets if key != self.last] + [self.last]
        with _signals_held():
            if os.path.lexists(self.targets[self.last]):
                os.rename(self.targets[self.last], aside / self.last)
            for key in order:
                target = self.targets[key]
                if os.path.lexists(target) and (os.path.isdir(target) or staged[key].is_dir()):
                    os.rename(target, aside / key)  # a folder cannot be renamed over
                os.replace(staged[key], target)
            for folder in {target.parent for target in self.targets.values()}:
                _fsync_dir(folder)


@contextmanager
def _signals_held() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP during the block; each takes effect right after it.

    Python runs signal handlers in the main thread only, so elsewhere this holds nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {}
    for number in _HELD_SIGNALS:
        previous[number] = signal.signal(number, lambda got, frame: caught.append(got))
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


def _fsync_tree(path: Path) -> None:
    """Flush a file, or every file and folder under a folder, to disk."""
    if path.is_symlink():
        return
    if path.is_file():
        with open(path, "rb") as file:
            os.fsync(file.fileno())
        return
    for child in path.iterdir():
        _fsync_tree(child)
    _fsync_dir(path)


def _fsync_dir(path: Path) -> None:
    """Flush a folder's entries (the renames into it) to disk, where the system allows it."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems refuse fsync on a folder
    finally:
        os.close(descriptor)
