"""Screenshots of the MLflow UI on a tracking store: the runs table, the compare view of an
experiment's runs, and one run's page (overview and metrics tab).

Starts `mlflow server` on the store (127.0.0.1, a free port), opens each view in headless
Chromium through playwright's Python package (the system browser: `--chromium`, default
/usr/bin/chromium; install it with `apt-get install -y chromium`), and saves to `--out`:
`runs-table.png`, `compare.png`, `run-overview.png`, `run-metrics.png`, each with the page's
visible text beside it (`<view>.txt`, read by tests/test_mlflow_ui.py). The server only reads
the store; point it at a copy when another process may write to it.

    python scripts/mlflow_screenshots.py --store mlflow.db --out docs/screenshots/after

The view URLs are those of MLflow 3.17's UI (`mlflow/server/js`, its router's
`#/experiments/<id>`, `#/compare-runs?runs=[...]&experiments=[...]` and
`#/experiments/<id>/runs/<run id>/model-metrics` routes); the runs table opens in the
experiment's headline view (`?viewStateShareKey=headline`, benchmark/tracking/glance.py) when
the store holds it, and ticks the headline columns through the Columns menu otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

VIEWS = ("runs-table", "compare", "run-overview", "run-metrics")
"""The views saved, in order: `<view>.png` and `<view>.txt` each."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def store_uri(store: str) -> str:
    """`store` as a tracking URI: a path to a SQLite file becomes `sqlite:///<absolute path>`."""
    if "://" in store:
        return store
    path = Path(store).resolve()
    if not path.is_file():
        raise SystemExit(f"{path}: no such MLflow database; pass --store <path to mlflow.db>")
    return f"sqlite:///{path}"


@contextmanager
def mlflow_server(uri: str, port: int, log: Path, timeout_s: float = 300.0) -> Iterator[str]:
    """Run `mlflow server` on `uri` at 127.0.0.1:`port` for the block; yields its base URL.

    Raises:
        SystemExit: The server exited, or did not answer /health within `timeout_s`.
    """
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", uri, "--workers", "1",
    ]  # fmt: skip
    with open(log, "w") as out:
        # Its own process group: the server's workers and job runner end with it.
        server = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise SystemExit(f"mlflow server exited with {server.returncode}; see {log}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"mlflow server gave no /health in {timeout_s:.0f} s; see {log}")
            time.sleep(0.5)
        yield base
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()


def view_urls(
    base: str, uri: str, experiment: str, run_name: str | None
) -> tuple[dict[str, str], bool]:
    """The URL of each of `VIEWS` for `experiment` (its runs, in the headline view when the
    experiment holds one; `run_name`'s page, else the first run's by name), and whether the
    runs table opens in the headline view.

    Raises:
        SystemExit: The experiment is missing or holds no run, or no run is named `run_name`.
    """
    from mlflow import MlflowClient

    from benchmark.tracking.glance import VIEW_TAG, headline_view_link

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise SystemExit(f"{uri}: no experiment {experiment!r}; pass --experiment")
    eid = found.experiment_id
    runs = sorted(client.search_runs([eid]), key=lambda run: run.info.run_name or "")
    if not runs:
        raise SystemExit(f"{uri}: experiment {experiment!r} holds no run")
    named = [run for run in runs if run_name is None or run.info.run_name == run_name]
    if not named:
        names = ", ".join(run.info.run_name or "?" for run in runs)
        raise SystemExit(f"{uri}: no run named {run_name!r} in {experiment!r}; runs: {names}")
    run_id = named[0].info.run_id
    compare = urllib.parse.urlencode(
        {
            "runs": json.dumps([run.info.run_id for run in runs]),
            "experiments": json.dumps([eid]),
        }
    )
    headline = VIEW_TAG in found.tags
    urls = {
        "runs-table": (
            headline_view_link(eid, base) if headline else f"{base}/#/experiments/{eid}/runs"
        ),
        "compare": f"{base}/#/compare-runs?{compare}",
        "run-overview": f"{base}/#/experiments/{eid}/runs/{run_id}",
        "run-metrics": f"{base}/#/experiments/{eid}/runs/{run_id}/model-metrics",
    }
    return urls, headline


def show_columns(page: Page, columns: list[str]) -> None:
    """Tick `columns` in the runs table's "Columns" menu, as a reader would: MLflow's table
    shows no metric until asked, and keeps the choice per browser. A column the menu lacks
    is reported and skipped."""
    if not columns:
        return
    # MLflow 3.17's "Group by" button carries the same test id as "Columns": find it by name.
    page.get_by_role("button", name="Columns", exact=True).first.click()
    search = page.get_by_placeholder("Search columns")
    for column in columns:
        search.fill(column)
        page.wait_for_timeout(500)
        item = page.get_by_role("menuitemcheckbox", name=column, exact=True)
        if item.count() == 0:
            item = page.get_by_role("checkbox", name=column, exact=True)
        if item.count() == 0:
            item = page.get_by_text(column, exact=True)
        if item.count() == 0:
            print(f"runs table: no column {column!r} to show", file=sys.stderr)
            continue
        item.first.click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(1000)


def close_assistant(page: Page) -> None:
    """Close MLflow 3's assistant side panel when it is open (it takes a third of the window):
    its header's "Close" button, the one in the window's top-right corner."""
    width = page.viewport_size["width"] if page.viewport_size else 1400
    for button in page.get_by_role("button", name="Close", exact=True).all():
        box = button.bounding_box()
        if box and box["y"] < 80 and box["x"] > width * 0.6:
            button.click()
            page.wait_for_timeout(500)
            return


def screenshots(
    urls: dict[str, str],
    out: Path,
    chromium: Path,
    width: int,
    height: int,
    settle_s: float,
    columns: list[str],
) -> list[Path]:
    """Open each URL in headless Chromium, wait for the page to settle, and save
    `<view>.png` (the window) and `<view>.txt` (the page's visible text) in `out`; the runs
    table with `columns` shown."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    saved: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=["--no-sandbox"]
        )
        page = browser.new_page(viewport={"width": width, "height": height})
        for view, url in urls.items():
            page.goto(url, wait_until="load")
            # The UI keeps polling, so the network never idles: wait a fixed time instead.
            page.wait_for_timeout(settle_s * 1000)
            close_assistant(page)
            if view == "runs-table":
                try:
                    show_columns(page, columns)
                except PlaywrightError as error:  # the shot is still worth saving
                    print(f"runs table: could not show {columns}: {error}", file=sys.stderr)
            png = out / f"{view}.png"
            page.screenshot(path=str(png))
            (out / f"{view}.txt").write_text(page.inner_text("body") + "\n")
            saved.append(png)
        browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", required=True, help="mlflow.db path or tracking URI")
    parser.add_argument("--out", type=Path, required=True, help="folder for the PNGs")
    parser.add_argument("--experiment", default="cdbench-synthetic")
    parser.add_argument("--run", default=None, help="run name for the run page (first if unset)")
    parser.add_argument("--chromium", type=Path, default=Path("/usr/bin/chromium"))
    parser.add_argument("--width", type=int, default=1800)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--settle", type=float, default=8.0, help="seconds to let each view draw")
    parser.add_argument(
        "--columns",
        default=None,
        help="metric columns to tick in the runs table (comma-separated; '' for none); by "
        "default none when the experiment holds the headline view, else f1,iou,f1_fixed,"
        "iou_fixed (a store written before cdbench stored that view)",
    )
    args = parser.parse_args(argv)
    if not args.chromium.is_file():
        raise SystemExit(f"{args.chromium}: no Chromium; `apt-get install -y chromium`")
    uri = store_uri(args.store)
    args.out.mkdir(parents=True, exist_ok=True)
    with mlflow_server(uri, free_port(), args.out / "server.log") as base:
        urls, headline = view_urls(base, uri, args.experiment, args.run)
        if args.columns is None:
            args.columns = "" if headline else "f1,iou,f1_fixed,iou_fixed"
        columns = [c for c in args.columns.split(",") if c]
        shots = screenshots(
            urls, args.out, args.chromium, args.width, args.height, args.settle, columns
        )
        for png in shots:
            print(f"{png} ({png.stat().st_size // 1024} kB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
