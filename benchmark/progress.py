"""Progress bars and library log lines: what a long `cdbench` step shows on stderr.

Every long step (download, extract, prepare, synth, train, evaluate, launch) makes its bar
with `progress_bar`, so all of them behave alike:
- on a terminal, a tqdm bar (items/s, ETA) redrawn in place;
- on anything else (CI, SLURM, `dvc repro 2> log`), plain lines: one when the step starts,
  one at every tenth of the total, one at least every `LINE_INTERVAL_S` seconds while it
  advances, and one at the end, e.g. `evaluate bsfnet-sisb-synthetic test: 24/48 pair (50%),
  9.1 pair/s, elapsed 00:02, ETA 00:02`; never a carriage return. A transient bar
  (`leave=False`, e.g. validation inside training, below the training bar) is erased from a
  terminal when done and leaves only its last line (and the `LINE_INTERVAL_S` lines) in a log;
- nothing when the caller's `runtime.progress` is false or `cdbench --quiet` was given.

`configure_output` is called once by `cdbench` (benchmark/cli.py `main`): it sets quiet mode and
hides MLflow's INFO lines (and alembic's, the "View run" links, urllib3's retries) unless
`--verbose`. tqdm is https://github.com/tqdm/tqdm; the lines are built from its `format_dict`.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any, Never, TypeVar, overload

from tqdm import tqdm

T = TypeVar("T")

LINE_INTERVAL_S = 60.0
"""The longest wait between two lines of a bar on a non-terminal stream while it advances."""
LINE_STEPS = 10
"""A non-terminal bar prints a line at each 1/LINE_STEPS of its total."""

_quiet = False

if TYPE_CHECKING:  # tqdm is generic in its type stubs only
    _Bar = tqdm[Any]
else:
    _Bar = tqdm


class LineProgress(_Bar):
    """A tqdm bar for a stream that is not a terminal: plain, complete lines instead of
    carriage-return redraws, at most LINE_STEPS + 2 lines for a known total (start, each
    tenth, end) plus one per `interval` seconds of a slow step. A bar made with `leave=False`
    prints only the last line and the `interval` ones, so a step repeated often (validation
    every epoch) adds one line per run to a log."""

    def __init__(self, *args: Any, interval: float = LINE_INTERVAL_S, **kwargs: Any) -> None:
        self._interval = interval
        self._transient = not kwargs.get("leave", True)
        self._printed_n: float | None = None
        self._printed_t = time.time()
        self._next_mark = 0.0
        # Let tqdm call display() on every update; display() decides when a line is due.
        kwargs.update(mininterval=0.0, miniters=1, maxinterval=math.inf)
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> None:
        """Print a line when one is due; a `msg` (tqdm clearing the bar) prints nothing."""
        if msg is None and self._due(time.time()):
            self._write_line(time.time())

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: finished lines stay (tqdm.write calls this around a message)."""

    def close(self) -> None:
        """Print the last line (if the last update was not printed) and close."""
        if not self.disable and self.n != self._printed_n:
            self._write_line(time.time())
        self.leave = False  # tqdm would otherwise redraw the bar and end it with a newline
        super().close()

    def _due(self, now: float) -> bool:
        if self._transient:  # the last line at close, and one per interval of a slow step
            return self.n != self._printed_n and now - self._printed_t >= self._interval
        if self._printed_n is None:
            return True
        if self.n == self._printed_n:
            return False
        if self.total and self.n >= self._next_mark:
            return True
        return now - self._printed_t >= self._interval

    def _write_line(self, now: float) -> None:
        self.fp.write(self.line() + "\n")
        self.fp.flush()
        self._printed_n, self._printed_t = self.n, now
        if self.total:
            step = self.total / LINE_STEPS
            self._next_mark = min((math.floor(self.n / step) + 1) * step, self.total)

    def line(self) -> str:
        """`desc: n/total unit (pct%), rate unit/s, elapsed mm:ss, ETA mm:ss, postfix`: the
        rate is the average since the bar started (steady in a log, unlike tqdm's EMA)."""
        d = self.format_dict
        unit, total = str(d["unit"]), d["total"]
        scaled, divisor = bool(d["unit_scale"]), int(d["unit_divisor"])

        def count(value: float) -> str:
            return tqdm.format_sizeof(value, divisor=divisor) + unit if scaled else f"{value:g}"

        done = self.n - (d.get("initial") or 0)
        elapsed = float(d["elapsed"])
        amount = f"{count(self.n)}/{count(total)}" if total else count(self.n)
        if not scaled:
            amount += f" {unit}"
        parts = [amount + (f" ({100 * self.n / total:.0f}%)" if total else "")]
        if done > 0 and elapsed > 0:
            rate = done / elapsed
            shown = count(rate) if scaled else f"{rate:.1f} " if rate >= 1 else f"{rate:.3f} "
            parts.append(f"{shown}{'' if scaled else unit}/s")
            parts.append(f"elapsed {tqdm.format_interval(elapsed)}")
            if total:
                parts.append(f"ETA {tqdm.format_interval(max(total - self.n, 0) / rate)}")
        if d.get("postfix"):
            parts.append(str(d["postfix"]))
        prefix = f"{d['prefix']}: " if d.get("prefix") else ""
        return prefix + ", ".join(parts)


@overload
def progress_bar(
    iterable: Iterable[T],
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    unit_scale: bool = False,
    initial: float = 0,
    leave: bool = True,
    enabled: bool = True,
    file: IO[str] | None = None,
) -> tqdm[T]: ...


@overload
def progress_bar(
    iterable: None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    unit_scale: bool = False,
    initial: float = 0,
    leave: bool = True,
    enabled: bool = True,
    file: IO[str] | None = None,
) -> tqdm[Never]: ...


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    unit_scale: bool = False,
    initial: float = 0,
    leave: bool = True,
    enabled: bool = True,
    file: IO[str] | None = None,
) -> tqdm[Any]:
    """A progress bar over `iterable` (or updated by hand with `.update(n)`) on `file`
    (default stderr): a tqdm bar on a terminal, `LineProgress` lines elsewhere, disabled when
    `enabled` is false (the caller's `runtime.progress`) or `cdbench --quiet` was given.

    `unit_scale` shows counts as 1.5M etc. with a divisor of 1024 (byte counts)."""
    stream = file if file is not None else sys.stderr
    options: dict[str, Any] = {
        "desc": desc,
        "total": total,
        "unit": unit,
        "unit_scale": unit_scale,
        "unit_divisor": 1024 if unit_scale else 1000,
        "initial": initial,
        "leave": leave,
        "file": stream,
        "disable": _quiet or not enabled,
    }
    if _is_terminal(stream):
        return tqdm(iterable, dynamic_ncols=True, **options)
    return LineProgress(iterable, **options)


def print_above(line: str, bar: tqdm[Any]) -> None:
    """Print `line` on stdout (flushed) above `bar`, which then advances by one: tqdm.write
    clears a terminal bar first, so the line does not land in the middle of it."""
    tqdm.write(line, file=sys.stdout)
    sys.stdout.flush()
    bar.update()


def say(message: str) -> None:
    """Print a status message on stderr (where the bars are) without breaking a bar: tqdm.write
    clears a terminal bar, prints the message, and redraws the bar below it."""
    tqdm.write(message, file=sys.stderr)


def _is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def configure_output(quiet: bool = False, verbose: bool = False) -> None:
    """Set how chatty `cdbench` is; called once, before any command imports MLflow.

    - `quiet`: no progress bars (errors and results are still printed).
    - not `verbose`: MLflow logs only warnings (its INFO lines such as "Started monitoring
      system metrics" are hidden; `MLFLOW_LOGGING_LEVEL` set by the user wins), it does not
      print "View run ... at: URL" links, and urllib3 does not log connection retries (the
      tracking code reports a store that cannot be reached itself). The environment variables
      are inherited by the commands `cdbench launch` starts.
    - `verbose`: INFO lines of every library, MLflow's included.
    """
    global _quiet
    _quiet = quiet
    if verbose:
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"
        logging.basicConfig(level=logging.INFO)
        logging.getLogger("mlflow").setLevel(logging.INFO)
        return
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    # When mlflow is already imported (cdbench called from Python), its logger is set directly.
    logging.getLogger("mlflow").setLevel(os.environ["MLFLOW_LOGGING_LEVEL"].upper())
    logging.getLogger("urllib3").setLevel(logging.ERROR)


def is_quiet() -> bool:
    """Whether `cdbench --quiet` turned progress bars off."""
    return _quiet
