"""Tests for benchmark/tracking/: where runs go (location), the shared SQLite database (store),
RunTracker (recorder), runs_table (query), git_commit (provenance) and the unit of the logged
metrics (glance: rates in percent).

Creating a fresh MLflow database runs every alembic migration (about 6 s here), so most tests
copy one database prepared once per session; `test_concurrent_processes_on_a_fresh_database`
starts from nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import time
import typing
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

from benchmark import tracking
from benchmark.config import RecipeConfig
from benchmark.errors import CdbenchError
from benchmark.evaluation.metrics import Counts
from benchmark.tracking import RunTracker
from benchmark.tracking.glance import (
    NOTE_TAG,
    RATE_FIGURES,
    SELECTION_RATE_FIGURES,
    evaluation_metrics,
    training_metrics,
)
from benchmark.tracking.recorder import _transient

EXPERIMENT = "cdbench-synthetic"


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MLflow database with the current schema, made once per session."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / tracking.DB_FILE
    tracking.prepare_tracking(f"sqlite:///{db}")
    return db


@pytest.fixture
def repo(tmp_path: Path, template_db: Path) -> Path:
    """A repository root (it holds `.dvc`) with a ready mlflow.db."""
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    shutil.copy(template_db, root / tracking.DB_FILE)
    return root


def _uri(root: Path) -> str:
    return tracking.default_tracking_uri(root)


# --- where ---------------------------------------------------------------------------------


def test_repo_root_from_a_nested_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    nested = root / "benchmark" / "data"
    nested.mkdir(parents=True)
    (root / ".git").mkdir()
    assert tracking.repo_root(nested) == root
    monkeypatch.chdir(nested)
    assert tracking.repo_root() == root


def test_repo_root_from_a_dvc_queue_copy(tmp_path: Path) -> None:
    real = tmp_path / "real"
    copy = real / ".dvc" / "tmp" / "exps" / "tmpabc"
    (copy / ".dvc").mkdir(parents=True)  # the copy holds its own .dvc and .git, as DVC makes it
    (copy / ".git").mkdir()
    (copy / "reports").mkdir()
    (real / ".git").mkdir()
    assert tracking.repo_root(copy / "reports") == real
    assert tracking.repo_root(copy) == real


def test_repo_root_outside_any_repository(tmp_path: Path) -> None:
    if any((p / ".git").exists() or (p / ".dvc").is_dir() for p in tmp_path.parents):
        pytest.skip(f"a folder above {tmp_path} holds .git or .dvc")
    with pytest.raises(CdbenchError, match="neither this folder nor any above"):
        tracking.repo_root(tmp_path)


def test_default_uri_is_absolute_sqlite_in_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.tracking_uri()
    assert uri == "sqlite:///" + str(root.resolve()) + "/mlflow.db"
    assert uri.startswith("sqlite:////")
    assert tracking.sqlite_path(uri) == root.resolve() / "mlflow.db"
    assert tracking.artifact_root(uri) == root.resolve() / "mlruns"


def test_environment_uri_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".git").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri() == "http://127.0.0.1:5000"
    # A server keeps its own artifact location, and so does a database outside a repo root.
    assert tracking.artifact_root("http://127.0.0.1:5000") is None
    assert tracking.artifact_root(f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}") is None


def test_a_server_uri_touches_nothing_in_the_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking-host:5000")
    uri = tracking.tracking_uri()
    assert uri == "http://tracking-host:5000"
    tracking.prepare_tracking(uri)  # no database, lock or artifact folder to make
    assert sorted(p.name for p in root.iterdir()) == [".dvc"]
    for other in (uri, "postgresql+psycopg2://user@db-host:5432/mlflow"):
        assert tracking.sqlite_path(other) is None
        assert tracking.experiment_artifact_location(other, EXPERIMENT) is None


def test_prepare_tracking_turns_telemetry_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    monkeypatch.delenv("DO_NOT_TRACK", raising=False)
    tracking.prepare_tracking("http://127.0.0.1:5000")
    import os

    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert os.environ["DO_NOT_TRACK"] == "true"


# --- one database, several processes -------------------------------------------------------


def _worker(uri: str, index: int, barrier: multiprocessing.synchronize.Barrier) -> None:
    """Prepare the database and log one run, in step with the other workers (a worker that
    fails breaks the barrier, so the others fail too instead of waiting forever)."""
    barrier.wait(timeout=120)
    try:
        tracking.prepare_tracking(uri)
    except BaseException:
        barrier.abort()
        raise
    barrier.wait(timeout=120)
    with RunTracker(
        experiment=EXPERIMENT, run_name=f"worker-{index}", tags={"seed": str(index)}, uri=uri
    ) as run:
        run.log_params({"index": index})
        for step in range(5):
            run.log_metrics({"loss": float(index * 10 + step)}, step=step)


@pytest.mark.slow
def test_concurrent_processes_on_a_fresh_database(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    uri = _uri(root)
    assert not (root / "mlflow.db").exists()
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(4)
    workers = [context.Process(target=_worker, args=(uri, i, barrier)) for i in range(4)]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 300
    for worker in workers:
        worker.join(timeout=max(1.0, deadline - time.monotonic()))
    for worker in workers:
        if worker.is_alive():
            worker.kill()
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"worker-{i}" for i in range(4)]
    assert {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        index = int(run.data.tags["seed"])
        history = client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == [
            (step, float(index * 10 + step)) for step in range(5)
        ]


# --- RunTracker ----------------------------------------------------------------------------


def test_resume_keeps_one_run_and_its_metric_history(repo: Path) -> None:
    uri = _uri(repo)
    params = {"train": {"epochs": 2, "lr": 0.001}}
    with RunTracker(experiment=EXPERIMENT, run_name="a", tags={"seed": "1"}, uri=uri) as first:
        first.log_params(params)
        first.log_metrics({"loss": 1.0}, step=0)
        first.log_metrics({"loss": 0.5}, step=1)
        run_id = first.run_id
    assert run_id is not None

    with RunTracker(
        experiment=EXPERIMENT, run_name="a", tags={"resumed": "yes"}, uri=uri, run_id=run_id
    ) as second:
        assert second.run_id == run_id
        second.log_params(params)  # the same values again: accepted
        with pytest.raises(CdbenchError, match=r"train\.lr: '0\.001' -> '0\.1'"):
            second.log_params({"train": {"epochs": 2, "lr": 0.1}})
        second.log_metrics({"loss": 0.25}, step=2)

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id])
    assert [r.info.run_id for r in runs] == [run_id]
    history = client.get_metric_history(run_id, "loss")
    assert sorted((m.step, m.value) for m in history) == [(0, 1.0), (1, 0.5), (2, 0.25)]
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["seed"] == "1"
    assert run.data.tags["resumed"] == "yes"
    assert run.data.params == {"train.epochs": "2", "train.lr": "0.001"}


def test_resume_refuses_a_run_of_another_experiment(repo: Path) -> None:
    uri = _uri(repo)
    with RunTracker(experiment="cdbench-cdd", run_name="a", tags={}, uri=uri) as other:
        run_id = other.run_id
    with pytest.raises(CdbenchError, match="belongs to experiment"):
        RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri, run_id=run_id)
    with pytest.raises(CdbenchError, match="cannot resume"):
        RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri, run_id="0" * 32)


def test_flatten_params() -> None:
    flat = tracking.flatten_params(
        {"model": {"name": "bsfnet", "widths": [64, 128]}, "seed": 3, "crop": (256, 256), "x": {}}
    )
    assert flat == {
        "model.name": "bsfnet",
        "model.widths": "[64, 128]",
        "seed": "3",
        "crop": "[256, 256]",
        "x": "{}",
    }
    long = tracking.flatten_params({"note": "y" * (MAX_PARAM_VAL_LENGTH + 1)})["note"]
    assert len(long) == MAX_PARAM_VAL_LENGTH
    assert long.endswith(tracking.TRUNCATION_MARKER)
    assert long.startswith("y" * (MAX_PARAM_VAL_LENGTH - len(tracking.TRUNCATION_MARKER)))


def test_params_are_logged_flat_in_batches(repo: Path) -> None:
    uri = _uri(repo)
    many = {f"p{i:03d}": i for i in range(150)}  # more than one batch of 100
    with RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri) as run:
        run.log_params({"group": many, "long": "z" * 7000})
        run_id = run.run_id
    params = MlflowClient(uri).get_run(run_id).data.params
    assert len(params) == 151
    assert params["group.p149"] == "149"
    assert params["long"].endswith(tracking.TRUNCATION_MARKER)
    assert len(params["long"]) == MAX_PARAM_VAL_LENGTH


def test_artifacts_land_in_the_repository_when_cwd_is_elsewhere(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    report = tmp_path / "metrics.json"
    report.write_text(json.dumps({"f1": 0.5}))
    uri = _uri(repo)
    with RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri) as run:
        run.log_artifact(report, artifact_path="reports")
        run.log_text("epochs: 2\n", "config.yaml")
        run_id = run.run_id

    experiment = MlflowClient(uri).get_experiment_by_name(EXPERIMENT)
    assert experiment.artifact_location == str(repo.resolve() / "mlruns" / EXPERIMENT)
    artifacts = repo.resolve() / "mlruns" / EXPERIMENT / run_id / "artifacts"
    assert json.loads((artifacts / "reports" / "metrics.json").read_text()) == {"f1": 0.5}
    assert (artifacts / "config.yaml").read_text() == "epochs: 2\n"
    assert list(elsewhere.iterdir()) == []


def test_disabled_tracker_writes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / ".dvc").mkdir(parents=True)
    report = tmp_path / "r.txt"
    report.write_text("x")
    with RunTracker(
        experiment=EXPERIMENT, run_name="a", tags={}, uri=_uri(root), enabled=False
    ) as run:
        assert run.run_id is None
        run.log_params({"a": 1})
        run.log_metrics({"loss": 1.0}, step=0)
        run.log_artifact(report)
        run.log_text("x", "x.txt")
        run.set_tags({"t": "v"})
    assert sorted(p.name for p in root.iterdir()) == [".dvc"]


@pytest.mark.parametrize(
    ("error", "status"),
    [(None, "FINISHED"), (RuntimeError, "FAILED"), (KeyboardInterrupt, "KILLED")],
)
def test_leaving_the_block_sets_the_status(
    repo: Path, error: type[BaseException] | None, status: str
) -> None:
    uri = _uri(repo)
    run = RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri)
    assert MlflowClient(uri).get_run(run.run_id).info.status == "RUNNING"
    if error is None:
        with run:
            pass
    else:
        with pytest.raises(error, match="stop"), run:  # the exception is not swallowed
            raise error("stop")
    assert MlflowClient(uri).get_run(run.run_id).info.status == status


def test_finish_refuses_an_unknown_status(repo: Path) -> None:
    run = RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=_uri(repo))
    with pytest.raises(ValueError, match="expected one of FINISHED, FAILED, KILLED"):
        run.finish("DONE")
    run.finish()


def test_two_trackers_in_one_process_stay_apart(repo: Path) -> None:
    import mlflow

    uri = _uri(repo)
    first = RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri)
    second = RunTracker(experiment="cdbench-cdd", run_name="b", tags={}, uri=uri)
    first.log_metrics({"loss": 1.0})
    second.log_metrics({"loss": 2.0})
    assert mlflow.active_run() is None
    first.finish()
    second.finish("KILLED")
    client = MlflowClient(uri)
    assert client.get_run(first.run_id).data.metrics == {"loss": 1.0}
    assert client.get_run(second.run_id).data.metrics == {"loss": 2.0}
    assert client.get_run(second.run_id).info.status == "KILLED"


def test_system_metrics_are_logged_and_stop_on_finish(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "0.05")
    uri = _uri(repo)
    run = RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri, system_metrics=True)
    monitor = run._monitor
    assert monitor is not None
    thread = monitor._process
    assert thread is not None and thread.is_alive()
    deadline = time.monotonic() + 30
    while monitor._logging_step < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    run.finish()
    assert not thread.is_alive()
    history = MlflowClient(uri).get_metric_history(run.run_id, "system/cpu_utilization_percentage")
    assert len(history) >= 2
    assert all(0.0 <= m.value <= 100.0 for m in history)


# --- reading back --------------------------------------------------------------------------


def test_runs_table(repo: Path) -> None:
    uri = _uri(repo)
    rows = [
        ("ifn-ds-synthetic", {"model": "ifn", "loss": "ds", "seed": "0"}, 50.0),
        ("bsfnet-sisb-synthetic", {"model": "bsfnet", "loss": "sisb", "seed": "0"}, 75.0),
    ]
    for name, tags, f1 in rows:
        with RunTracker(
            experiment=EXPERIMENT, run_name=name, tags={**tags, "dataset": "synthetic"}, uri=uri
        ) as run:
            run.log_metrics({"test/whole/f1": f1, "test/whole/iou": f1 / 2, "train/loss": 1.0})
    with RunTracker(experiment="cdbench-cdd", run_name="other", tags={}, uri=uri) as run:
        run.log_metrics({"test/tiles/f1": 10.0})

    table = tracking.runs_table([EXPERIMENT], uri=uri)
    assert list(table.columns) == [
        "run_name",
        "status",
        "model",
        "loss",
        "dataset",
        "recipe",
        "seed",
        "stale_checkpoint",
        "test/whole/f1",
        "test/whole/iou",
    ]
    assert list(table["run_name"]) == ["bsfnet-sisb-synthetic", "ifn-ds-synthetic"]
    assert list(table["model"]) == ["bsfnet", "ifn"]
    assert list(table["test/whole/f1"]) == [75.0, 50.0]
    assert list(table["test/whole/iou"]) == [37.5, 25.0]
    assert table["recipe"].isna().all()

    everything = tracking.runs_table(uri=uri)
    assert list(everything["run_name"]) == ["bsfnet-sisb-synthetic", "ifn-ds-synthetic", "other"]
    assert "test/tiles/f1" in everything.columns

    text = tracking.format_runs_table(table)
    lines = text.splitlines()
    assert lines[0].split() == list(table.columns)
    assert lines[1].split() == [
        "bsfnet-sisb-synthetic",
        "FINISHED",
        "bsfnet",
        "sisb",
        "synthetic",
        "-",
        "0",
        "-",
        "75.0000",
        "37.5000",
    ]
    assert tracking.format_runs_table(tracking.runs_table(["no-such"], uri=uri)) == "(no runs)"


# --- units: rates in percent --------------------------------------------------------------


def _record(counts: Counts, threshold: float) -> dict[str, object]:
    """A metrics record (reports/runs/<run>.json) of one protocol, `fixed`, as evaluate writes
    it: the threshold, the counts and their rates (fractions), plus identity fields."""
    return {
        "experiment": "bsfnet-sisb-synthetic",
        "seed": 0,
        "stale_checkpoint": False,
        "fixed/threshold": threshold,
        **{f"fixed/{k}": v for k, v in counts.as_dict().items()},
        **{f"fixed/{k}": v for k, v in counts.scores().items()},
    }


def test_evaluation_metrics_are_percent_and_thresholds_keep_their_unit() -> None:
    record = _record(Counts(tp=9, fp=3, fn=5, tn=83), threshold=1.25)
    logged = evaluation_metrics(record)
    # by hand: f1 = 2tp / (2tp + fp + fn) = 18/26, iou = tp / (tp + fp + fn) = 9/17
    assert logged["f1_fixed"] == pytest.approx(100 * 18 / 26)
    assert logged["iou_fixed"] == pytest.approx(100 * 9 / 17)
    assert logged["test/fixed/f1"] == logged["f1_fixed"]
    assert logged["test/fixed/precision"] == pytest.approx(75.0)  # 9 / 12
    assert logged["test/fixed/recall"] == pytest.approx(100 * 9 / 14)
    assert logged["test/fixed/oa"] == pytest.approx(92.0)  # 92 / 100
    # kappa: po = 0.92, pe = (12 * 14 + 88 * 86) / 100² = 0.7736
    assert logged["test/fixed/kappa"] == pytest.approx(100 * (0.92 - 0.7736) / (1 - 0.7736))
    assert logged["test/fixed/threshold"] == 1.25  # a distance: not a rate
    assert not {k for k in logged if k.rsplit("/", 1)[-1] in ("tp", "fp", "fn", "tn")}


def test_every_rate_has_a_unit() -> None:
    # A figure added to Counts.scores or a new selection metric must be classed here first.
    assert set(Counts(tp=1, fp=1, fn=1, tn=1).scores()) == set(RATE_FIGURES)
    selectable = typing.get_args(typing.get_type_hints(RecipeConfig)["selection_metric"])
    assert set(selectable) <= set(SELECTION_RATE_FIGURES)


def test_training_record_logs_selection_rates_in_percent() -> None:
    record = {
        "train/loss": 0.25,
        "train/lr": 0.001,
        "train/pairs_per_s": 12.0,
        "train/epoch": 2.0,
        "val/f1": 0.5,
        "val/iou": 0.25,
        "val/precision": 0.4,
        "val/recall": 0.8,
        "val/max_f1": 0.6,
        "val/max_f1_threshold": 0.7,
        "val/miou": 0.55,
        "val/selection": 0.6,
        "val/best_selection": 0.65,
    }
    logged = training_metrics(record)
    assert logged == pytest.approx(
        {
            "train/loss": 0.25,
            "train/lr": 0.001,
            "train/pairs_per_s": 12.0,
            "train/epoch": 2.0,
            "val/f1": 50.0,
            "val/iou": 25.0,
            "val/precision": 40.0,
            "val/recall": 80.0,
            "val/max_f1": 60.0,
            "val/max_f1_threshold": 0.7,
            "val/miou": 55.0,
            "val/selection": 60.0,
            "val/best_selection": 65.0,
        }
    )
    assert record["val/f1"] == 0.5  # the record itself (history, summary.json) is unchanged
    assert training_metrics({"test/f1": 0.5})["test/f1"] == 50.0  # selection on test


def test_percent_metrics_round_trip_through_the_store_and_runs_table(repo: Path) -> None:
    uri = _uri(repo)
    record = _record(Counts(tp=9, fp=3, fn=5, tn=83), threshold=0.5)
    with RunTracker(
        experiment=EXPERIMENT, run_name="bsfnet-sisb-synthetic", tags={"seed": "0"}, uri=uri
    ) as run:
        run.log_metrics(evaluation_metrics(record))
        run_id = run.run_id
    assert MlflowClient(uri).get_run(run_id).data.metrics["f1_fixed"] == pytest.approx(
        100 * 18 / 26
    )
    (row,) = tracking.runs_table([EXPERIMENT], uri=uri).to_dict("records")
    for figure in RATE_FIGURES:
        assert row[f"test/fixed/{figure}"] == pytest.approx(100 * float(record[f"fixed/{figure}"]))
    assert row["test/fixed/threshold"] == 0.5
    text = tracking.format_runs_table(tracking.runs_table([EXPERIMENT], uri=uri))
    assert "69.2308" in text.splitlines()[1].split()  # 100 * 18/26, 4 decimals


def test_cdbench_runs_prints_rates_in_percent_and_says_so(
    repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.cli import main

    uri = _uri(repo)
    record = _record(Counts(tp=9, fp=3, fn=5, tn=83), threshold=0.5)
    with RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=uri) as run:
        run.log_metrics(evaluation_metrics(record))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    assert main(["runs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines.index(next(line for line in lines if line.startswith("run_name")))
    assert lines[header].split()[-1] == "test/fixed/f1"  # F1 columns only, by default
    assert lines[header + 1].split()[-1] == "69.2308"  # 100 * 18/26
    assert "percent" in lines[header + 2]


def test_git_commit(tmp_path: Path) -> None:
    assert tracking.git_commit(tmp_path) == "unknown"

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = git("rev-parse", "HEAD")
    assert len(head) == 40
    (tmp_path / "untracked.txt").write_text("not part of the tree")
    assert tracking.git_commit(tmp_path) == head
    (tmp_path / "a.txt").write_text("2")
    assert tracking.git_commit(tmp_path) == f"{head}-dirty"


# --- a store that hiccups: retries and the pending queue ------------------------------------


class _FlakyLogBatch:
    """Wraps a client's `log_batch`: fails with MLflow's "database is locked" error (code
    TEMPORARILY_UNAVAILABLE, what the SQL store raises once SQLite's busy timeout passes) for
    the first `failures` calls, or while `down` is set; counts the calls."""

    def __init__(self, real: object, failures: int = 0) -> None:
        self.real = real
        self.failures = failures
        self.down = False
        self.calls = 0

    def __call__(self, *args: object, **kwargs: object) -> object:
        from mlflow.exceptions import MlflowException
        from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

        self.calls += 1
        if self.down or self.calls <= self.failures:
            raise MlflowException(
                "(sqlite3.OperationalError) database is locked",
                error_code=TEMPORARILY_UNAVAILABLE,
            )
        return self.real(*args, **kwargs)  # type: ignore[operator]


def _flaky(tracker: RunTracker, failures: int = 0) -> _FlakyLogBatch:
    flaky = _FlakyLogBatch(tracker._client.log_batch, failures)
    tracker._client.log_batch = flaky  # type: ignore[method-assign]
    return flaky


def _steps(uri: str, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_a_locked_store_is_retried_and_the_point_logged(repo: Path) -> None:
    uri = _uri(repo)
    with RunTracker(
        experiment=EXPERIMENT, run_name="r", tags={}, uri=uri, retry_delays_s=(0, 0, 0)
    ) as run:
        flaky = _flaky(run, failures=2)
        assert run.log_metrics({"loss": 0.5}, step=1) is True
        assert flaky.calls == 3 and run.pending_count == 0
    assert run.run_id is not None
    assert _steps(uri, run.run_id, "loss") == [1]


def test_a_store_down_through_every_retry_queues_and_logs_at_the_next_success(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uri = _uri(repo)
    run = RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=uri, retry_delays_s=(0,))
    assert run.run_id is not None
    flaky = _flaky(run)
    flaky.down = True
    assert run.log_metrics({"loss": 0.5, "f1": 0.1}, step=1) is False  # no exception
    assert run.pending_count == 2
    assert flaky.calls == 2  # one attempt and one retry
    assert "database is locked" in capsys.readouterr().err
    run.log_metrics({"loss": 0.4}, step=2)
    assert flaky.calls == 3  # the store is known to fail: one attempt, no retry
    flaky.down = False
    assert run.log_metrics({"loss": 0.3}, step=3) is True
    assert run.pending_count == 0
    assert _steps(uri, run.run_id, "loss") == [1, 2, 3]
    assert _steps(uri, run.run_id, "f1") == [1]
    run.finish()
    assert MlflowClient(uri).get_run(run.run_id).info.status == "FINISHED"


def test_pending_records_are_logged_by_the_next_process(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    uri = _uri(repo)
    first = RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=uri, retry_delays_s=(0,))
    assert first.run_id is not None
    _flaky(first).down = True
    first.log_params({"lr": 0.01})
    first.set_tags({"stage": "train"})
    first.log_metrics({"loss": 0.5}, step=7)
    first.finish("FAILED")  # the pending records stay pending: a warning, no exception
    assert "warning" in capsys.readouterr().err
    assert first.pending_count == 3
    # Through a checkpoint, as the training loop keeps them (weights_only loading).
    torch.save({"mlflow_pending": first.pending_state()}, tmp_path / "last.pt")
    saved = torch.load(tmp_path / "last.pt", weights_only=True)["mlflow_pending"]

    second = RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=uri, run_id=first.run_id)
    second.restore_pending(saved)
    assert second.flush() is True
    second.finish()
    run = MlflowClient(uri).get_run(first.run_id)
    assert run.data.params["lr"] == "0.01"
    assert run.data.tags["stage"] == "train"
    assert _steps(uri, first.run_id, "loss") == [7]
    assert run.info.status == "FINISHED"


def test_an_error_that_retrying_cannot_fix_is_raised_at_once(repo: Path) -> None:
    from mlflow.exceptions import MlflowException

    run = RunTracker(
        experiment=EXPERIMENT, run_name="r", tags={}, uri=_uri(repo), retry_delays_s=(0, 0)
    )
    calls = {"n": 0}

    def invalid(*args: object, **kwargs: object) -> None:
        calls["n"] += 1
        raise MlflowException("invalid metric", error_code=INVALID_PARAMETER_VALUE)

    run._client.log_batch = invalid  # type: ignore[method-assign]
    with pytest.raises(MlflowException, match="invalid metric"):
        run.log_metrics({"loss": 1.0}, step=1)
    assert calls["n"] == 1


@pytest.mark.slow
def test_a_store_locked_longer_than_sqlites_busy_timeout(repo: Path) -> None:
    """A real lock: another connection holds `BEGIN EXCLUSIVE` for 24 s, longer than the
    20 s SQLite busy timeout MLflow sets, while a point is logged; the retry logs it."""
    import sqlite3
    import threading

    uri = _uri(repo)
    run = RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=uri)
    assert run.run_id is not None
    locked, releasing = threading.Event(), threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(repo / tracking.DB_FILE, isolation_level=None)
        connection.execute("BEGIN EXCLUSIVE")
        locked.set()
        time.sleep(24)
        releasing.set()  # before COMMIT: nothing can be written until it is set
        connection.execute("COMMIT")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(30)
    try:
        assert run.log_metrics({"loss": 0.5}, step=1) is True
        assert releasing.is_set()  # it was logged after the lock, not around it
    finally:
        holder.join()
    run.finish()
    assert _steps(uri, run.run_id, "loss") == [1]


def test_a_description_another_run_inserts_first_is_retried_not_fatal(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs starting together on one store both find the experiment undescribed; the
    second insert of the tag fails with SQLite's uniqueness error (seen with `cdbench launch
    --workers 2`). Here the other run's insert lands between our read and our write."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import BAD_REQUEST

    uri = _uri(repo)
    real = MlflowClient.set_experiment_tag
    calls: list[str] = []

    def raced(self: MlflowClient, experiment_id: str, key: str, value: str) -> None:
        calls.append(key)
        if calls.count(key) == 1:  # the other run wins the insert, ours then conflicts
            real(self, experiment_id, key, "the other run's text")
            raise MlflowException(
                "(sqlite3.IntegrityError) UNIQUE constraint failed: experiment_tags.key, "
                "experiment_tags.experiment_id",
                error_code=BAD_REQUEST,
            )
        real(self, experiment_id, key, value)

    monkeypatch.setattr(MlflowClient, "set_experiment_tag", raced)
    run = RunTracker(
        experiment=EXPERIMENT,
        run_name="r",
        tags={},
        uri=uri,
        retry_delays_s=(0,),
        description="ours",
    )
    assert run.run_id is not None
    run.finish()
    assert calls.count(NOTE_TAG) == 2  # the conflict was retried once
    tags = MlflowClient(uri).get_experiment(run.experiment_id).tags
    assert tags[NOTE_TAG] in ("ours", "the other run's text")


def test_the_headline_view_is_stored_where_missing_and_an_edit_is_kept(repo: Path) -> None:
    """The experiment gets MLflow's shared view state under `VIEW_TAG` with its first run; a
    view a reader saved under that key since is not overwritten by the next run, and a run
    that brings no view sets none."""
    from benchmark.tracking.glance import VIEW_TAG, headline_view

    uri = _uri(repo)
    view = headline_view(whole=False)
    RunTracker(experiment=EXPERIMENT, run_name="a", tags={}, uri=uri, view=view).finish()
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None and experiment.tags[VIEW_TAG] == view
    client.set_experiment_tag(experiment.experiment_id, VIEW_TAG, '{"selectedColumns": []}')
    RunTracker(experiment=EXPERIMENT, run_name="b", tags={}, uri=uri, view=view).finish()
    assert client.get_experiment(experiment.experiment_id).tags[VIEW_TAG] == (
        '{"selectedColumns": []}'
    )
    RunTracker(experiment="cdbench-other", run_name="c", tags={}, uri=uri).finish()
    other = client.get_experiment_by_name("cdbench-other")
    assert other is not None and VIEW_TAG not in other.tags


def test_headline_view_names_the_ui_columns_and_links_to_it() -> None:
    """The view is the JSON MLflow's UI restores: its default attribute columns and the
    headline metrics, named as its sort keys (attributes.`Name`, metrics.`name`), sorted by
    f1 descending; the whole-image columns only where asked."""
    from benchmark.tracking.glance import LOCAL_UI, headline_view, headline_view_link, ui_address

    tiles = json.loads(headline_view(whole=False))
    assert tiles["selectedColumns"] == [
        "attributes.`Dataset`", "attributes.`Source`", "attributes.`Models`",
        "metrics.`f1`", "metrics.`iou`", "metrics.`f1_fixed`", "metrics.`iou_fixed`",
    ]  # fmt: skip
    assert tiles["orderByKey"] == "metrics.`f1`" and tiles["orderByAsc"] is False
    whole = json.loads(headline_view(whole=True))["selectedColumns"]
    assert whole[:7] == tiles["selectedColumns"] and "metrics.`f1_whole`" in whole
    assert headline_view_link("7", "http://host:5000/") == (
        "http://host:5000/#/experiments/7/runs?viewStateShareKey=headline"
    )
    assert ui_address("https://mlflow.lab:8443") == "https://mlflow.lab:8443"
    assert ui_address("sqlite:////repo/mlflow.db") == LOCAL_UI == "http://127.0.0.1:5000"


def test_a_param_changed_is_not_mistaken_for_a_concurrent_insert(repo: Path) -> None:
    """Only uniqueness races are retried: MLflow's refusal to change a logged param stays an
    error at once."""
    from mlflow.exceptions import MlflowException

    run = RunTracker(experiment=EXPERIMENT, run_name="r", tags={}, uri=_uri(repo))
    assert run.run_id is not None
    client = MlflowClient(_uri(repo))
    client.log_param(run.run_id, "a", "1")
    with pytest.raises(MlflowException) as caught:
        client.log_param(run.run_id, "a", "2")
    assert not _transient(caught.value)
    run.finish()
