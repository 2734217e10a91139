"""dvc.yaml re-runs exactly what changed: every stage depends on every module of benchmark/ that
its command imports (a planted missing dep is caught, naming the stage and the module), the
import walk sees function-level imports and agrees with what a real command imports, every
result-changing setting is a param and in the resume digest, pretrained runs alone depend on
the weights stage, and the check stage follows the report."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from benchmark import checkpoint
from benchmark.cli import _runtime, build_parser, main
from benchmark.config import EVALUATE_RUNTIME, RESULT_RUNTIME, Params, load_params
from benchmark.errors import ConfigError
from benchmark.run import digest, resolved_config
from benchmark.stages import (
    BEGIN,
    END,
    STAGE_COMMANDS,
    check_stages,
    missing_deps,
    module_deps,
    render_stages,
    stage_imports,
    write_stages,
)
from benchmark.training import loop
from tests.conftest import params_copy, synth_config
from tests.data.tiny import RUN, TINY, write_params

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _stages(path: Path = REPO / "dvc.yaml") -> dict:
    return yaml.safe_load(path.read_text())["stages"]


def _definition(stages: dict, stage: str) -> dict:
    return stages[stage].get("do", stages[stage])


# --- deps: every imported module --------------------------------------------------------------


def test_every_stage_of_the_repository_lists_every_module_it_imports() -> None:
    assert missing_deps(REPO / "dvc.yaml") == []
    check_stages(load_params(REPO / "params.yaml"), REPO / "dvc.yaml")


def test_train_deps_cover_the_modules_it_reads_indirectly() -> None:
    """Modules train reads only through others (config, data, evaluation) are in its deps, as
    a file or a folder."""
    deps = _definition(_stages(), "train")["deps"]
    for module in (
        "benchmark/config.py",
        "benchmark/data/cache.py",
        "benchmark/data/layout.py",
        "benchmark/data/opencd.py",
        "benchmark/data/photometric.py",
        "benchmark/evaluation/predict.py",
        "benchmark/evaluation/metrics.py",
    ):
        assert any(module == d or module.startswith(d + "/") for d in deps), module


def _without_line(text: str, stage: str, line: str) -> str:
    """`text` with the first `line` after the stage's header removed."""
    start = text.index(f"\n  {stage}:\n")
    at = text.index(f"\n{line}\n", start)
    return text[:at] + text[at + len(line) + 1 :]


def test_a_planted_missing_dep_fails_the_check_naming_stage_and_module(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dvc_yaml = tmp_path / "dvc.yaml"
    text = (REPO / "dvc.yaml").read_text()
    planted = _without_line(text, "train", "        - benchmark/data/cache.py")
    assert planted != text
    dvc_yaml.write_text(planted)
    problems = missing_deps(dvc_yaml)
    assert len(problems) == 1, problems
    assert "stage 'train' imports benchmark/data/cache.py" in problems[0]
    assert "benchmark/cli.py -> " in problems[0]  # the chain of imports that reaches it
    with pytest.raises(ConfigError, match=r"stage 'train' imports benchmark/data/cache\.py"):
        check_stages(load_params(REPO / "params.yaml"), dvc_yaml)
    args = ["--params", str(REPO / "params.yaml"), "stages", "--dvc-yaml", str(dvc_yaml)]
    assert main([*args, "--check"]) == 1
    error = capsys.readouterr().err
    assert "stage 'train' imports benchmark/data/cache.py" in error and "cdbench stages" in error
    assert main(args) == 0  # regenerated, the check passes again
    assert main([*args, "--check"]) == 0
    assert dvc_yaml.read_text() == text


def test_a_stage_removed_from_dvc_yaml_is_named(tmp_path: Path) -> None:
    stages = _stages()
    del stages["check"]
    dvc_yaml = tmp_path / "dvc.yaml"
    dvc_yaml.write_text(yaml.safe_dump({"stages": stages}))
    assert missing_deps(dvc_yaml) == ["stage 'check' is missing"]


def _package_copy(tmp_path: Path) -> Path:
    root = tmp_path / "src"
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    return root


def test_an_import_inside_a_function_is_followed(tmp_path: Path) -> None:
    """A new module imported lazily, inside a function of a module train imports, becomes a
    dep of train only; the repository's dvc.yaml then lacks it, and the check says so."""
    root = _package_copy(tmp_path)
    (root / "benchmark/data/extra.py").write_text('"""planted"""\n')
    (root / "benchmark/lazy.py").write_text("VALUE = 1\n")
    transforms = root / "benchmark/data/transforms.py"  # imported by train and evaluate
    transforms.write_text(
        transforms.read_text()
        + "\n\ndef _planted() -> None:\n    if True:\n"
        + "        from benchmark.lazy import VALUE  # noqa: F401\n"
        + "        from . import extra  # noqa: F401\n"
    )
    train = stage_imports("train", root)
    assert "benchmark/lazy.py" in train and "benchmark/data/extra.py" in train
    assert train["benchmark/lazy.py"].endswith("benchmark/data/transforms.py -> benchmark/lazy.py")
    assert "benchmark/lazy.py" not in stage_imports("synth", root)
    assert "benchmark/lazy.py" in module_deps("train", root)
    problems = missing_deps(REPO / "dvc.yaml", root)
    assert any("stage 'train' imports benchmark/lazy.py" in p for p in problems), problems
    assert any("stage 'evaluate' imports benchmark/lazy.py" in p for p in problems), problems
    assert not any("stage 'synth'" in p for p in problems), problems


def test_a_cli_function_counts_only_for_its_own_stage(tmp_path: Path) -> None:
    """cli.py is read per command: a module imported inside cmd_report is report's only."""
    root = _package_copy(tmp_path)
    (root / "benchmark/only_report.py").write_text("VALUE = 1\n")
    cli = root / "benchmark/cli.py"
    text = cli.read_text()
    anchor = '    """`cdbench report` -> `benchmark.reporting.report.write_report`."""\n'
    assert anchor in text
    cli.write_text(text.replace(anchor, anchor + "    import benchmark.only_report  # noqa\n"))
    assert "benchmark/only_report.py" in stage_imports("report", root)
    for stage in set(STAGE_COMMANDS) - {"report"}:
        assert "benchmark/only_report.py" not in stage_imports(stage, root), stage


def test_a_folder_is_listed_only_when_every_file_of_it_is_imported(tmp_path: Path) -> None:
    root = _package_copy(tmp_path)
    before = module_deps("train", root)
    assert "benchmark/losses" in before  # losses/__init__ imports every loss
    (root / "benchmark/losses/unused.py").write_text("VALUE = 1\n")
    after = module_deps("train", root)
    assert "benchmark/losses" not in after and "benchmark/losses/sisb.py" in after
    assert "benchmark/losses/unused.py" not in after


def _imported_at_run_time(args: list[str], cwd: Path) -> set[str]:
    """The files of benchmark/ a real `python -m benchmark ...` imported (`-X importtime`)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "MLFLOW_TRACKING_URI": f"sqlite:///{cwd}/m.db"}
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "benchmark", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    names = set(re.findall(r"\|\s+(benchmark(?:\.\w+)*)\s*$", done.stderr, re.MULTILINE))
    assert "benchmark.cli" in names
    files = set()
    for name in names:
        base = REPO.joinpath(*name.split("."))
        path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
        files.add(path.relative_to(REPO).as_posix())
    return files


@pytest.mark.slow
def test_the_walk_covers_what_real_commands_import(tmp_path: Path) -> None:
    """synth, train and evaluate on a tiny dataset, each in a fresh interpreter: every module
    of benchmark/ they imported is among the walk's modules of their stage."""
    params = write_params(tmp_path, tmp_path / "prepared")
    base = ["--params", str(params)]
    synth = _imported_at_run_time(
        [*base, "synth", "--out", str(tmp_path / "prepared/synthetic")], tmp_path
    )
    # the tiny dataset of tests/test_training (params.synth of TINY is what synth used)
    assert synth <= set(stage_imports("synth")), synth - set(stage_imports("synth"))
    run = [RUN, "--checkpoints", str(tmp_path / "checkpoints"), "--no-tracking"]
    train = _imported_at_run_time([*base, "train", *run], tmp_path)
    assert train <= set(stage_imports("train")), train - set(stage_imports("train"))
    assert "benchmark/training/loop.py" in train and "benchmark/data/cache.py" in train
    evaluate = _imported_at_run_time(
        [*base, "evaluate", *run, "--reports", str(tmp_path / "reports")], tmp_path
    )
    assert evaluate <= set(stage_imports("evaluate")), evaluate - set(stage_imports("evaluate"))


# --- params and the resume digest -------------------------------------------------------------


def test_every_result_changing_runtime_setting_is_a_param() -> None:
    stages = _stages()
    train = _definition(stages, "train")["params"]
    evaluate = _definition(stages, "evaluate")["params"]
    assert {f"runtime.{key}" for key in RESULT_RUNTIME} <= set(train)
    assert {f"runtime.{key}" for key in EVALUATE_RUNTIME} <= set(evaluate)
    assert {"experiments.${item.experiment}", "recipes.${item.recipe}"} <= set(train)
    # the settings that do not change the numbers are not params: changing them re-runs nothing
    for key in ("workers", "checkpoint_every", "progress", "system_metrics", "device"):
        assert f"runtime.{key}" not in train + evaluate
    # DVC refuses a param that params.yaml lacks: each is there
    runtime = yaml.safe_load((REPO / "params.yaml").read_text())["runtime"]
    assert set(RESULT_RUNTIME) <= set(runtime)
    assert _definition(stages, "synth")["params"] == ["synth"]


@pytest.fixture
def tiny(tmp_path: Path) -> Params:
    """TINY's params over a prepared folder holding only a manifest (the digest reads no more)."""
    prepared = tmp_path / "prepared"
    (prepared / "synthetic").mkdir(parents=True)
    (prepared / "synthetic/manifest.json").write_text('{"splits": {}}\n')
    return load_params(write_params(tmp_path, prepared))


def _digest(params: Params, runtime: object = None) -> str:
    (spec,) = params.runs()
    return digest(resolved_config(params, spec, runtime or params.runtime))


@pytest.mark.parametrize("key", RESULT_RUNTIME)
def test_each_result_changing_runtime_setting_changes_the_digest(tiny: Params, key: str) -> None:
    flipped = dataclasses.replace(tiny.runtime, **{key: not getattr(tiny.runtime, key)})
    assert _digest(tiny, flipped) != _digest(tiny)


def test_settings_that_change_no_number_keep_the_digest(tiny: Params) -> None:
    other = dataclasses.replace(
        tiny.runtime,
        device="cuda",
        workers=7,
        checkpoint_every=1,
        system_metrics=not tiny.runtime.system_metrics,
        progress=not tiny.runtime.progress,
    )
    assert _digest(tiny, other) == _digest(tiny)


def test_the_digest_follows_the_data(tiny: Params) -> None:
    manifest = Path(tiny.data.prepared_dir) / "synthetic/manifest.json"
    before = _digest(tiny)
    manifest.write_text('{"splits": {"train": {"pairs": 1}}}\n')
    assert _digest(tiny) != before


def test_the_digest_uses_the_command_line_overrides(tiny: Params) -> None:
    """`cdbench train --bf16 / --channels-last` train with those values: so does the digest."""
    parser = build_parser()
    plain = _runtime(tiny, parser.parse_args(["train", RUN]))
    for flag in ("--bf16", "--channels-last"):
        overridden = _runtime(tiny, parser.parse_args(["train", RUN, flag]))
        assert _digest(tiny, overridden) != _digest(tiny, plain), flag
    assert _digest(tiny, plain) == _digest(tiny)


def test_loss_options_on_the_recipe_or_on_the_experiment_give_one_digest(tiny: Params) -> None:
    """A recipe owns its source's loss options (params.yaml's IFN recipes); the same options
    written on the experiment train the same run, so the digest is the same (the checkpoint
    resumes), and differs from the run without them."""
    ((name, experiment),) = tiny.experiments.items()
    options = {"initial_scale": 2.0}
    recipe = dataclasses.replace(tiny.recipes[experiment.recipe], loss_options=options)
    on_recipe = dataclasses.replace(tiny, recipes={experiment.recipe: recipe})
    own = dataclasses.replace(experiment, loss_options=options)
    on_experiment = dataclasses.replace(tiny, experiments={name: own})
    assert on_recipe.experiments[name].loss_options == options
    assert _digest(on_recipe) == _digest(on_experiment) != _digest(tiny)


def test_a_checkpoint_of_another_fused_optimizer_setting_is_moved_aside(
    tiny: Params, tmp_path: Path
) -> None:
    old = _digest(tiny)
    fused = dataclasses.replace(tiny.runtime, fused_optimizer=True)
    new = _digest(tiny, fused)
    assert new != old
    out = tmp_path / "checkpoints" / RUN
    checkpoint.save_atomic({"digest": old, "step": 3}, out / "last.pt")
    checkpoint.save_atomic({"digest": old, "step": 3}, out / "best.pt")
    assert loop._resume_state(out / "last.pt", new, is_main=True) is None
    assert not (out / "last.pt").exists() and not (out / "best.pt").exists()
    assert checkpoint.load(out / "last.stale.pt")["digest"] == old
    assert (out / "best.stale.pt").exists()
    # the same setting resumes
    weights = {"w": torch.ones(2)}
    checkpoint.save_atomic({"digest": new, "step": 3, "model_and_loss": weights}, out / "last.pt")
    state = loop._resume_state(out / "last.pt", new, is_main=True)
    assert state is not None and state["step"] == 3


@pytest.mark.slow
def test_checkpoint_every_changes_no_number(tmp_path: Path) -> None:
    """Saving every step or never between validations trains the same weights."""
    from benchmark.data.synth import generate_synthetic

    small = synth_config(size=64, train=8, val=2, test=2)
    generate_synthetic(tmp_path / "prepared/synthetic", small)
    states = []
    for every in (1, 100):
        folder = tmp_path / f"every{every}"
        folder.mkdir()
        runtime = dict(TINY["runtime"], checkpoint_every=every)
        params = load_params(write_params(folder, tmp_path / "prepared", {"runtime": runtime}))
        (spec,) = params.runs()
        loop.train_run(params, spec, folder / "checkpoints", tracking=False)
        states.append(checkpoint.load(folder / "checkpoints/last.pt"))
    a, b = states
    assert a["digest"] == b["digest"] and a["step"] == b["step"] == 6
    for key, value in a["model_and_loss"].items():
        assert bool((value == b["model_and_loss"][key]).all()), key
    assert a["best_score"] == b["best_score"]


# --- weights and check stages -----------------------------------------------------------------


def test_only_pretrained_runs_depend_on_the_weights() -> None:
    params = load_params(REPO / "params.yaml")
    stages = _stages()
    assert "${item.weights}" in _definition(stages, "train")["deps"]
    runs = stages["train"]["foreach"]
    assert set(runs) == {spec.name for spec in params.runs()}
    kinds = set()
    for name, item in runs.items():
        pretrained = params.recipes[params.experiments[item["experiment"]].recipe].pretrained
        kinds.add(pretrained)
        if pretrained:
            assert item["weights"] == "${data.weights_dir}", name
        else:  # its data again: no dep on the weights stage
            assert item["weights"] == f"${{data.prepared_dir}}/{item['dataset']}", name
    assert kinds == {True, False}
    weights = stages["weights"]
    assert (
        weights["cmd"] == "cdbench weights"
    )  # the folder read from params.yaml: no param in a cmd
    assert weights["outs"] == [{"${data.weights_dir}": {"persist": True}}]


def test_the_check_stage_follows_the_report() -> None:
    check = _stages()["check"]
    assert check["cmd"] == "cdbench check --profile full"
    assert {"reports/comparison.csv", "reports/metrics", "references.yaml"} <= set(check["deps"])
    assert check["outs"] == [{"reports/check.json": {"cache": False}}]
    report_outs = [next(iter(out)) for out in _stages()["report"]["outs"]]
    assert "reports/comparison.csv" in report_outs


def test_dvc_views_and_git_agree_on_the_pipelines_outputs() -> None:
    """`dvc metrics show` reads numbers-only files and `dvc plots show` the per-run CSVs (both
    evaluate outputs), and git ignores every output under reports/, so a `make demo` changes
    only dvc.lock in `git status` (DVC refuses an ignored lock); measurements stay tracked."""
    document = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert document["metrics"] == ["reports/metrics"]
    plots = {next(iter(plot)): next(iter(plot.values())) for plot in document["plots"]}
    assert {folder: (p["x"], p["y"]) for folder, p in plots.items()} == {
        "reports/pr": ("recall", "precision"),
        "reports/training": ("step", "loss"),
        "reports/selection": ("step", "selection"),
    }
    stages = document["stages"]
    outs = [next(iter(out)) for stage in ("evaluate", "report", "check")
            for out in _definition(stages, stage)["outs"]]  # fmt: skip
    run = load_params(REPO / "params.yaml").runs()[0].name
    paths = [out.replace("${key}", run) for out in outs if out.startswith("reports/")]
    assert {f"reports/{folder}/{run}.csv" for folder in ("pr", "training", "selection")} <= set(
        paths
    )
    kept = ["reports/perf.md", "reports/parity.md", "reports/demo-spread/runs.jsonl"]
    found = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths, "dvc.lock", *kept],
        cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert found.stdout.split() == paths


def _dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(cwd / ".site")}
    return subprocess.run(
        [str(BIN / "dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow
def test_dvc_dry_runs_the_weights_stage_for_pretrained_runs_only(tmp_path: Path) -> None:
    """`dvc repro --dry` in a scratch copy with every input folder present (empty): the whole
    pipeline lists `weights`; the demo's `--glob 'evaluate@*-synthetic*'` does not."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", "references.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    params = load_params(root / "params.yaml")
    folders = [params.data.weights_dir, "reports/metrics", "reports/per_image"]
    folders += ["reports/runs", "reports/curves", "reports/predictions"]
    folders += [str(params.data.raw(d)) for d in ("cdd", "levir-cd")]
    folders += [str(params.data.prepared(d)) for d in ("cdd", "levir-cd", "synthetic")]
    folders += [f"checkpoints/{spec.name}" for spec in params.runs()]
    for folder in folders:
        (root / folder).mkdir(parents=True)
    (root / "reports/comparison.csv").write_text("")
    assert _dvc(["init", "--no-scm", "-q"], root).returncode == 0
    everything = _dvc(["repro", "--dry"], root)
    assert everything.returncode == 0, everything.stderr
    ran = re.findall(r"Running stage '([^']+)'", everything.stdout)
    assert {"weights", "synth", "report", "check"} <= set(ran)
    pretrained = [n for n in ran if n.startswith("train@") and "synthetic" not in n]
    assert pretrained and ran.index("weights") < ran.index(pretrained[0])
    assert ran.index("report") < ran.index("check")
    demo = _dvc(["repro", "--dry", "--glob", "evaluate@*-synthetic*"], root)
    assert demo.returncode == 0, demo.stderr
    ran = re.findall(r"Running stage '([^']+)'", demo.stdout)
    assert "synth" in ran and any(name.startswith("train@") for name in ran)
    assert "weights" not in ran and "check" not in ran


# --- no value of params.yaml reaches the shell -------------------------------------------------


def test_no_command_interpolates_a_value_of_params_yaml() -> None:
    """DVC runs each cmd through a shell: `${data.prepared_dir}` in a command ran a `$(...)`
    written in params.yaml. The commands read their folders from params.yaml themselves."""
    stages = _stages()
    for name in stages:
        command = _definition(stages, name)["cmd"]
        for found in re.findall(r"\$\{[^}]*\}", command):
            assert found in ("${item}", "${item.experiment}", "${item.seed}"), (name, command)


def test_the_check_refuses_a_param_put_into_a_command(tmp_path: Path) -> None:
    text = (REPO / "dvc.yaml").read_text()
    assert text.count("    cmd: cdbench synth\n") == 1
    planted = text.replace(
        "    cmd: cdbench synth\n", "    cmd: cdbench synth --out ${data.prepared_dir}/synthetic\n"
    )
    (tmp_path / "dvc.yaml").write_text(planted)
    with pytest.raises(ConfigError, match=r"interpolates \$\{data.prepared_dir\}; a value of"):
        check_stages(load_params(REPO / "params.yaml"), tmp_path / "dvc.yaml")


@pytest.mark.slow
def test_dvc_repro_does_not_run_a_command_written_in_a_path_param(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`dvc repro` of prepare@cdd in a scratch copy whose params.yaml sets
    `prepared_dir: data/$(touch MARKER)prepared`: the command holds no param, so the shell
    never runs the touch, and cdbench refuses the path, naming the key."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "dvc.yaml", root / "dvc.yaml")
    shutil.copytree(
        REPO / "benchmark", root / "benchmark", ignore=shutil.ignore_patterns("__pycache__")
    )
    marker = tmp_path / "MARKER"
    (root / "params.yaml").write_text(
        f"data:\n  raw_dir: data/raw\n  prepared_dir: data/$(touch {marker})prepared\n"
    )
    (root / "data" / "raw" / "cdd").mkdir(parents=True)
    assert _dvc(["init", "--no-scm", "-q"], root).returncode == 0
    monkeypatch.setenv("PATH", f"{BIN}{os.pathsep}{os.environ['PATH']}")  # dvc runs `cdbench`
    done = _dvc(["repro", "--single-item", "prepare@cdd"], root)
    assert done.returncode != 0
    assert not marker.exists(), "the shell ran a command written in params.yaml"
    assert "data.prepared_dir: 'data/$(touch" in done.stdout + done.stderr
    assert "is not a plain path" in done.stdout + done.stderr


# --- the generated train/evaluate stages ----------------------------------------------------------


NEW = "ifn-ds-synthetic-twice"


def _params_with_two_seeds(tmp_path: Path) -> Path:
    def add(data: dict[str, Any]) -> None:
        data["experiments"][NEW] = {
            "model": "ifn",
            "loss": "ifn_ds",
            "dataset": "synthetic",
            "recipe": "demo",
            "seeds": [0, 1],
        }

    path = params_copy(tmp_path, add)
    return path.rename(tmp_path / "params.yaml")


def test_repository_dvc_yaml_matches_params(repository_params: Params) -> None:
    check_stages(repository_params, REPO / "dvc.yaml")


def test_stages_regenerated_for_a_new_experiment(tmp_path: Path) -> None:
    params = load_params(_params_with_two_seeds(tmp_path))
    dvc_yaml = tmp_path / "dvc.yaml"
    # The repository's file ends with the block; hand-written lines after it must survive too.
    original = (REPO / "dvc.yaml").read_text() + "\n  # hand-written, after the block\n"
    dvc_yaml.write_text(original)
    with pytest.raises(ConfigError, match="run `cdbench stages`"):
        check_stages(params, dvc_yaml)
    write_stages(params, dvc_yaml)
    check_stages(params, dvc_yaml)
    text = dvc_yaml.read_text()
    block = render_stages(params)
    assert block in text
    for seed in (0, 1):
        line = (
            f"      {NEW}-s{seed}: {{experiment: {NEW}, seed: {seed}, "
            f"dataset: synthetic, recipe: demo, weights: '${{data.prepared_dir}}/synthetic'}}\n"
        )
        assert line in block
    assert f"      {NEW}:" not in block
    # Outside the block, byte for byte the same.
    head = original[: original.index(BEGIN)]
    tail = original[original.index(END) + len(END) :]
    assert tail.endswith("after the block\n")
    assert text == head + block.removesuffix("\n") + tail
    # The same through the command line.
    args = ["--params", str(tmp_path / "params.yaml"), "stages", "--dvc-yaml", str(dvc_yaml)]
    assert main([*args, "--check"]) == 0


def test_stages_check_command_fails_when_out_of_date(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_path = _params_with_two_seeds(tmp_path)
    dvc_yaml = tmp_path / "dvc.yaml"
    shutil.copyfile(REPO / "dvc.yaml", dvc_yaml)
    args = ["--params", str(params_path), "stages", "--dvc-yaml", str(dvc_yaml)]
    assert main([*args, "--check"]) == 1
    assert "cdbench stages" in capsys.readouterr().err
    assert main(args) == 0
    assert main([*args, "--check"]) == 0


def test_dvc_lists_the_generated_stages(tmp_path: Path) -> None:
    params = load_params(_params_with_two_seeds(tmp_path))
    shutil.copyfile(REPO / "dvc.yaml", tmp_path / "dvc.yaml")
    write_stages(params, tmp_path / "dvc.yaml")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}
    run = [sys.executable, "-m", "dvc"]
    subprocess.run(
        [*run, "init", "--no-scm"], cwd=tmp_path, env=env, check=True, capture_output=True
    )
    listed = subprocess.run(
        [*run, "stage", "list"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    names = {line.split()[0] for line in listed.stdout.splitlines() if line.strip()}
    assert {f"train@{NEW}-s0", f"train@{NEW}-s1", f"evaluate@{NEW}-s1"} <= names
    assert "train@bsfnet-sisb-cdd-s0" in names and f"train@{NEW}" not in names
