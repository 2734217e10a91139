"""`cdbench launch` (benchmark/launch/): which card each worker gets, and the whole
find-run-commit cycle over a tiny DVC repository, through the local pool, submitit's
LocalExecutor and, where `slurmctld`/`slurmd` are installed and we are root, a one-node SLURM
started by the test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from benchmark.config import load_params
from benchmark.errors import CdbenchError
from benchmark.launch import launch, summary
from benchmark.launch.local import run_command, run_local, worker_slots
from benchmark.launch.pending import Outcome, Plan, TrainStage, train_stages
from benchmark.launch.slurm import SlurmOptions, run_submitit
from benchmark.stages import render_stages
from tests.data.queue_params import PARAMS, RUNS

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


# --- the device assignment (no GPU needed: the device list is injected) --------------------


def test_one_slot_per_card_and_each_sees_only_its_card() -> None:
    slots = worker_slots(["0", "1", "3"], workers=None)
    assert slots == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
        {"CUDA_VISIBLE_DEVICES": "3"},
    ]


def test_workers_cap_the_slots_and_pack_puts_k_runs_on_a_card() -> None:
    assert worker_slots(["0", "1", "2"], workers=2) == [
        {"CUDA_VISIBLE_DEVICES": "0"},
        {"CUDA_VISIBLE_DEVICES": "1"},
    ]
    packed = worker_slots(["0", "1"], workers=None, pack=2)
    assert sorted(s["CUDA_VISIBLE_DEVICES"] for s in packed) == ["0", "0", "1", "1"]
    # more workers than cards x pack: never a second run on a card
    assert len(worker_slots(["0", "1"], workers=8)) == 2


def test_cpu_workers_split_the_cores() -> None:
    assert (
        worker_slots([], workers=2, cores=2)
        == [
            {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        ]
        * 2
    )
    assert worker_slots([], workers=3, cores=16)[0]["OMP_NUM_THREADS"] == "5"
    assert worker_slots([], workers=4, cores=2)[0]["OMP_NUM_THREADS"] == "1"  # at least one
    assert worker_slots([], workers=None, cores=6) == [
        {"OMP_NUM_THREADS": "6", "MKL_NUM_THREADS": "6"}
    ]


def test_threads_fix_each_workers_threads_whatever_the_cores() -> None:
    one = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    assert worker_slots([], workers=2, cores=16, threads=1) == [one, one]
    assert worker_slots(["0"], workers=None, threads=1) == [{"CUDA_VISIBLE_DEVICES": "0", **one}]
    with pytest.raises(CdbenchError, match="--threads 0"):
        worker_slots([], workers=2, threads=0)


@pytest.mark.parametrize(
    ("devices", "workers", "pack", "message"),
    [
        (["0", "0"], None, 1, "listed twice"),
        (["0"], 0, 1, "--workers 0"),
        (["0"], 1, 0, "--pack 0"),
    ],
)
def test_bad_slot_settings_are_refused(
    devices: list[str], workers: int | None, pack: int, message: str
) -> None:
    with pytest.raises(CdbenchError, match=message):
        worker_slots(devices, workers, pack)


def _fake_stages(n: int, tmp_path: Path) -> list[TrainStage]:
    return [
        TrainStage(f"train@run-{i}", "true", tmp_path / "checkpoints" / f"run-{i}")
        for i in range(n)
    ]


class _CardWatch:
    """A runner that records, per run, the environment it got, and fails the test if a card
    is held by two runs at once (beyond `pack`). The first `together` runs wait for each
    other, so they are certainly concurrent."""

    def __init__(self, pack: int, together: int) -> None:
        self.pack = pack
        self.barrier = threading.Barrier(together, timeout=30)
        self.started = 0
        self.guard = threading.Lock()
        self.holding: dict[str, int] = {}
        self.seen: dict[str, dict[str, str]] = {}
        self.errors: list[str] = []
        self.most_at_once = 0

    def __call__(self, stage: TrainStage, env: dict[str, str], log: Path) -> int:
        card = env["CUDA_VISIBLE_DEVICES"]
        with self.guard:
            self.seen[stage.name] = env
            self.holding[card] = self.holding.get(card, 0) + 1
            if self.holding[card] > self.pack:
                self.errors.append(f"{card} held by {self.holding[card]} runs")
            self.most_at_once = max(self.most_at_once, sum(self.holding.values()))
            first = self.started < self.barrier.parties
            self.started += 1
        if first:
            self.barrier.wait()
        with self.guard:
            self.holding[card] -= 1
        return 0


def _no_commit(stage: TrainStage, outcome: Outcome) -> Outcome:
    return outcome


def test_concurrent_workers_never_share_a_card(tmp_path: Path) -> None:
    slots = worker_slots(["0", "1"], workers=None)
    watch = _CardWatch(pack=1, together=2)
    outcomes = run_local(_fake_stages(6, tmp_path), slots, tmp_path / "logs", watch, _no_commit)
    assert watch.errors == []
    assert watch.most_at_once == 2  # both cards worked at once
    assert {env["CUDA_VISIBLE_DEVICES"] for env in watch.seen.values()} == {"0", "1"}
    assert all(set(env) == {"CUDA_VISIBLE_DEVICES"} for env in watch.seen.values())
    assert sorted(o.stage for o in outcomes) == [f"train@run-{i}" for i in range(6)]
    assert {o.device for o in outcomes} == {"cuda:0", "cuda:1"}
    assert all(o.state == "done" for o in outcomes)


def test_pack_runs_two_on_one_card_at_once(tmp_path: Path) -> None:
    slots = worker_slots(["5"], workers=None, pack=2)
    watch = _CardWatch(pack=2, together=2)  # would time out if the two did not overlap
    run_local(_fake_stages(4, tmp_path), slots, tmp_path / "logs", watch, _no_commit)
    assert watch.errors == []
    assert watch.most_at_once == 2
    assert {env["CUDA_VISIBLE_DEVICES"] for env in watch.seen.values()} == {"5"}


def test_a_worker_process_sees_its_card_and_threads_in_its_environment(tmp_path: Path) -> None:
    stage = TrainStage(
        "train@env",
        f"{sys.executable} -c \"import os; print(os.environ.get('CUDA_VISIBLE_DEVICES'), "
        f"os.environ.get('OMP_NUM_THREADS'))\"",
        tmp_path / "checkpoints" / "env",
    )
    log = tmp_path / "logs" / "env.log"
    assert run_command(stage, {"CUDA_VISIBLE_DEVICES": "3"}, log, tmp_path) == 0
    assert log.read_text().split()[0] == "3"
    assert run_command(stage, worker_slots([], 2, cores=4)[0], log, tmp_path) == 0
    assert log.read_text().split()[1] == "2"


def test_a_failed_stage_is_reported_with_its_log(tmp_path: Path) -> None:
    stages = [
        TrainStage("train@ok", "echo fine", tmp_path / "checkpoints" / "ok"),
        TrainStage("train@bad", "echo broken >&2; exit 3", tmp_path / "checkpoints" / "bad"),
    ]
    outcomes = run_local(
        stages,
        worker_slots([], 2, cores=2),
        tmp_path / "logs",
        lambda stage, env, log: run_command(stage, env, log, tmp_path),
        _no_commit,
    )
    bad = next(o for o in outcomes if o.stage == "train@bad")
    assert bad.state == "failed (exit 3)"
    assert bad.log == tmp_path / "logs" / "train@bad.log"
    assert "broken" in bad.log.read_text()
    line, status = summary(outcomes, Plan())
    assert status == 1
    assert "train@bad (failed (exit 3), log " + str(bad.log) in line
    assert "train@ok" not in line.split("failed:")[1]


def test_a_failed_submitit_job_is_reported_with_its_log(tmp_path: Path) -> None:
    import submitit

    executor = submitit.LocalExecutor(folder=tmp_path / "logs" / "%j")
    executor.update_parameters(timeout_min=5)
    stage = TrainStage("train@bad", "echo broken >&2; exit 3", tmp_path / "checkpoints" / "bad")
    outcomes = run_submitit([stage], tmp_path, executor, _no_commit, poll_s=0.2)
    assert len(outcomes) == 1 and outcomes[0].state.startswith("failed")
    assert outcomes[0].log.is_file() and outcomes[0].log.parent == tmp_path / "logs" / str(
        outcomes[0].log.name.split("_")[0]
    )
    assert "broken" in outcomes[0].log.read_text()
    line, status = summary(outcomes, Plan())
    assert status == 1 and "train@bad" in line and str(outcomes[0].log) in line


# --- the cycle over a tiny DVC repository --------------------------------------------------


def _env() -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }  # fmt: skip


def _run(args: list[str], cwd: Path) -> str:
    done = subprocess.run(args, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{args} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture
def tiny_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A git + DVC repository with two tiny synthetic runs (tests/test_queue.py's params)."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    (root / "dvc.yaml").write_text("stages:\n" + render_stages(load_params(root / "params.yaml")))
    (root / ".gitignore").write_text("/mlflow.db\n/mlflow.db.lock\n/mlruns/\n/logs/\n")
    _run(["git", "init", "-q"], root)
    _run([str(BIN / "dvc"), "init", "-q"], root)
    _run(["git", "add", "-A"], root)
    _run(["git", "commit", "-qm", "scratch"], root)
    monkeypatch.chdir(root)
    monkeypatch.setenv("PATH", _env()["PATH"])
    return root


def _train_status(root: Path) -> str:
    return _run([str(BIN / "dvc"), "status", *(f"train@{r}" for r in RUNS)], root)


def test_stages_are_chosen_by_experiment_glob_or_all(tiny_repo: Path) -> None:
    every = [s.name for s in train_stages(tiny_repo)]
    assert every == [f"train@{r}" for r in RUNS]
    assert [s.run for s in train_stages(tiny_repo, ["bsfnet-sisb-synthetic"])] == [RUNS[0]]
    assert [s.run for s in train_stages(tiny_repo, globs=["*contrastive*"])] == [RUNS[1]]
    stage = train_stages(tiny_repo, globs=["train@*sisb*"])[0]
    assert stage.cmd == "cdbench train bsfnet-sisb-synthetic --seed 0"
    assert stage.lock == tiny_repo / "checkpoints" / "bsfnet-sisb-synthetic.lock"
    with pytest.raises(CdbenchError, match="no train stage matches 'nope'"):
        train_stages(tiny_repo, ["nope"])


def test_a_run_without_its_data_is_blocked_and_named(tiny_repo: Path) -> None:
    outcomes, chosen = launch(tiny_repo, devices=[], workers=2, runner=_never)
    assert outcomes == [] and chosen.todo == []
    assert len(chosen.blocked) == 2 and "data/prepared/synthetic is missing" in chosen.blocked[0]
    line, status = summary(outcomes, chosen)
    assert status == 1 and f"train@{RUNS[0]}" in line


def _never(stage: TrainStage, env: dict[str, str], log: Path) -> int:
    raise AssertionError(f"{stage.name} should not run")


def test_a_run_whose_lock_is_held_is_skipped(tiny_repo: Path) -> None:
    from benchmark.runlock import run_lock

    _run([str(BIN / "cdbench"), "synth"], tiny_repo)
    lock = tiny_repo / "checkpoints" / f"{RUNS[0]}.lock"
    with run_lock(lock, "a training"):
        plan_lines = launch(tiny_repo, [RUNS[0]], devices=[], runner=_never)[1].skipped
    assert plan_lines == [f"train@{RUNS[0]}: skipped, {lock} is held (it is training)"]


def _check_cycle(root: Path, outcomes: list[Outcome]) -> None:
    assert sorted(o.stage for o in outcomes) == sorted(f"train@{r}" for r in RUNS)
    assert all(o.state == "done" for o in outcomes), outcomes
    assert "up to date" in _train_status(root)
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    for run in RUNS:
        assert (root / "checkpoints" / run / "last.pt").is_file()
        assert lock[f"train@{run}"]["outs"][0]["path"] == f"checkpoints/{run}"
    # a second launch runs nothing
    again, chosen = launch(root, devices=[], workers=2, runner=_never)
    assert again == [] and chosen.todo == []
    assert chosen.skipped == [f"train@{r}: skipped, up to date" for r in RUNS]
    # `dvc repro` of a train stage finds nothing to do
    assert "didn't change, skipping" in _run(
        [str(BIN / "dvc"), "repro", "--single-item", f"train@{RUNS[0]}"], root
    )


@pytest.mark.slow
def test_two_local_workers_train_two_stages_and_record_them(tiny_repo: Path) -> None:
    _run([str(BIN / "dvc"), "repro", "synth"], tiny_repo)
    outcomes, _ = launch(tiny_repo, devices=[], workers=2)
    _check_cycle(tiny_repo, outcomes)
    assert {o.device for o in outcomes} == {
        f"cpu ({max(1, len(os.sched_getaffinity(0)) // 2)} threads)"
    }


@pytest.mark.slow
def test_the_submitit_local_executor_cycle(tiny_repo: Path) -> None:
    import submitit

    _run([str(BIN / "dvc"), "repro", "synth"], tiny_repo)
    executor = submitit.LocalExecutor(folder=tiny_repo / "logs" / "launch" / "%j")
    executor.update_parameters(timeout_min=20)
    outcomes, _ = launch(tiny_repo, executor="submitit-local", submitit_exec=executor, threads=1)
    _check_cycle(tiny_repo, outcomes)
    for outcome in outcomes:
        assert outcome.device.endswith("cpu (1 threads)")  # the job's environment
        assert outcome.log.parent.parent == tiny_repo / "logs" / "launch"
        assert "trained " in outcome.log.read_text()


# --- a real one-node SLURM ------------------------------------------------------------------


SLURM_CONF = """\
ClusterName=cdbenchtest
SlurmctldHost={host}
AuthType=auth/none
CredType=cred/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobCompType=jobcomp/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A one-node SLURM (slurmctld + slurmd on this machine, no authentication), stopped
    after the test. Skipped where SLURM is not installed or we are not root."""
    missing = [c for c in ("slurmctld", "slurmd", "sbatch", "sinfo") if shutil.which(c) is None]
    if missing:
        pytest.skip(
            f"SLURM is not installed ({', '.join(missing)} missing; `apt-get install slurm-wlm`)"
        )
    if os.geteuid() != 0:
        pytest.skip("starting slurmd needs root")
    folder = tmp_path / "slurm"
    for sub in ("state", "spool"):
        (folder / sub).mkdir(parents=True)
    conf = folder / "slurm.conf"
    conf.write_text(
        SLURM_CONF.format(
            host=socket.gethostname(),
            dir=folder,
            ctld_port=_free_port(),
            d_port=_free_port(),
            cpus=len(os.sched_getaffinity(0)),
        )
    )
    monkeypatch.setenv("SLURM_CONF", str(conf))
    daemons = [
        subprocess.Popen(
            [daemon, "-D", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        for daemon in ("slurmctld", "slurmd")
    ]
    try:
        for _ in range(60):
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            if state.stdout.strip() == "idle":
                break
            time.sleep(1)
        else:
            log = "".join(p.read_text() for p in folder.glob("*.log"))
            pytest.fail(f"the one-node SLURM did not start:\n{log[-3000:]}")
        yield folder
    finally:
        for daemon in daemons:
            daemon.terminate()
            daemon.wait(timeout=30)


@pytest.mark.slow
@pytest.mark.xdist_group("servers")  # free ports: see test_shared_store.py
def test_a_real_slurm_submit_run_collect_cycle(tiny_repo: Path, slurm: Path) -> None:
    _run([str(BIN / "dvc"), "repro", "synth"], tiny_repo)
    options = SlurmOptions(gpus=0, cpus=1, time_min=20)  # the test node has no GPU
    outcomes, _ = launch(tiny_repo, executor="slurm", slurm=options)
    _check_cycle(tiny_repo, outcomes)
    for outcome in outcomes:
        assert outcome.device == f"{socket.gethostname()} cpu (1 threads)"  # --cpus 1
        assert "trained " in outcome.log.read_text()


def test_the_command_line_names_blocked_runs_and_exits_1(
    tiny_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmark.cli import main

    assert main(["launch", "--devices", "", "--workers", "2"]) == 1
    out, err = capsys.readouterr()
    assert f"train@{RUNS[0]}: blocked, its data data/prepared/synthetic is missing" in out
    assert f"blocked: train@{RUNS[0]}; train@{RUNS[1]}" in err
    assert main(["launch", "nope"]) == 1
    assert "no train stage matches 'nope'" in capsys.readouterr().err


def test_only_a_finished_run_is_committed_and_a_refused_commit_is_reported(
    tiny_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import benchmark.launch

    _run([str(BIN / "cdbench"), "synth"], tiny_repo)
    committed: list[str] = []

    def refuse(root: Path, stage: str) -> None:
        committed.append(stage)
        if stage.endswith(RUNS[1]):
            raise CdbenchError(f"{root}: `dvc commit --force {stage}` failed: planted")

    monkeypatch.setattr(benchmark.launch, "dvc_commit", refuse)
    exits = {f"train@{RUNS[0]}": 2, f"train@{RUNS[1]}": 0}
    outcomes, _ = launch(
        tiny_repo, devices=[], workers=2, runner=lambda stage, env, log: exits[stage.name]
    )
    assert committed == [f"train@{RUNS[1]}"]  # a failed run is never recorded
    states = {o.stage: o.state for o in outcomes}
    assert states == {f"train@{RUNS[0]}": "failed (exit 2)", f"train@{RUNS[1]}": "not recorded"}
    line, status = summary(outcomes, Plan())
    assert status == 1 and f"train@{RUNS[1]} (not recorded" in line
