"""The `cdbench` command line: one thin subcommand per DVC stage.

Each subcommand parses its arguments, reads `params.yaml`, and calls one function of one module
(named in its docstring). `params.yaml` is read and checked before anything else is imported
or done. Expected failures (`CdbenchError`) print one message and exit 1; anything
else is a bug and shows its traceback. Heavy modules (torch) are imported inside the commands so
that `cdbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.config import (
    Params,
    RunSpec,
    RuntimeConfig,
    check_device,
    load_params,
    override,
)
from benchmark.data.datasets import DATASETS, REAL_DATASETS
from benchmark.errors import CdbenchError
from benchmark.progress import configure_output


def cmd_download(args: argparse.Namespace) -> int:
    """`cdbench download <dataset>` -> `benchmark.data.download.download_dataset`."""
    params = load_params(args.params)
    from benchmark.data.download import download_dataset

    out = Path(args.out) if args.out else params.data.raw(args.dataset)
    paths = download_dataset(args.dataset, out)
    for path in paths:
        print(f"verified {path}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """`cdbench prepare <dataset>` -> `benchmark.data.prepare.prepare_dataset`."""
    params = load_params(args.params)
    from benchmark.data.prepare import prepare_dataset

    raw = Path(args.raw) if args.raw else params.data.raw(args.dataset)
    out = Path(args.out) if args.out else params.data.prepared(args.dataset)
    manifest = prepare_dataset(args.dataset, raw, out, allow_partial=args.allow_partial)
    counts = {split: info["pairs"] for split, info in manifest["splits"].items()}
    print(f"prepared {args.dataset} in {out}: {json.dumps(counts)}")
    return 0


def cmd_synth(args: argparse.Namespace) -> int:
    """`cdbench synth` -> `benchmark.data.synth.generate_synthetic`."""
    params = load_params(args.params)
    from benchmark.data.synth import generate_synthetic

    config = params.synth
    if args.seed is not None:
        config = override(config, "--seed: synth", seed=args.seed)
    out = Path(args.out) if args.out else params.data.prepared("synthetic")
    manifest = generate_synthetic(out, config)
    counts = {split: info["pairs"] for split, info in manifest["splits"].items()}
    baseline = manifest["pixel_difference_baseline"]["best_f1"]
    print(
        f"synthetic dataset in {out}: {json.dumps(counts)}; "
        f"best pixel-difference F1 on test = {100 * baseline:.1f} %"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """`cdbench models` -> `benchmark.models.summary.summarise_models`."""
    from benchmark.models.summary import format_table, summarise_models

    rows = summarise_models(size=args.size)
    print(format_table(rows, size=args.size))
    return 0


def cmd_weights(args: argparse.Namespace) -> int:
    """`cdbench weights` -> `benchmark.models.weights_fetch.fetch_weights`."""
    params = load_params(args.params)
    from benchmark.models.weights_fetch import fetch_weights

    out = Path(args.out) if args.out else Path(params.data.weights_dir)
    for item in fetch_weights(out, progress=params.runtime.progress):
        print(f"{'downloaded' if item.downloaded else 'present'}, verified: {item.path}")
    return 0


def _runtime(params: Params, args: argparse.Namespace) -> RuntimeConfig:
    """params.runtime with the command-line overrides of `train`/`evaluate` applied."""
    overrides = {
        key: getattr(args, key)
        for key in ("device", "bf16", "channels_last", "workers")
        if getattr(args, key, None) is not None
    }
    if args.device is not None:
        check_device(args.device, "--device")
    runtime = override(params.runtime, "command line", **overrides)
    return runtime


def _specs(params: Params, args: argparse.Namespace) -> list[RunSpec]:
    """The runs named on the command line: one seed, or every seed of the experiment."""
    experiment = params.experiment(args.experiment)
    seeds = [args.seed] if args.seed is not None else experiment.seeds
    return [RunSpec.of(args.experiment, experiment, seed) for seed in seeds]


def _checked_runs(args: argparse.Namespace) -> tuple[Params, list[RunSpec], RuntimeConfig]:
    """params.yaml, the runs named on the command line and the runtime, all checked first."""
    params = load_params(args.params)
    specs = _specs(params, args)
    runtime = _runtime(params, args)
    from benchmark.training.options import check_experiments

    check_experiments(params)
    return params, specs, runtime


def _check_crops(params: Params, experiments: Sequence[str]) -> None:
    """Each experiment's recipe crop fits its training images (`check_crop`), before training.
    Names params.yaml does not define are left to the command's own error."""
    from benchmark.data.dataset import ChangeDetectionDataset, check_crop

    for name in experiments:
        if name not in params.experiments:
            continue
        experiment = params.experiments[name]
        recipe = params.recipes[experiment.recipe]
        if recipe.crop is not None:
            pairs = ChangeDetectionDataset(
                params.data.prepared(experiment.dataset), "train", whole=recipe.train_on_whole
            )
            check_crop(pairs, recipe.crop, f"recipes.{experiment.recipe}.crop")


def cmd_train(args: argparse.Namespace) -> int:
    """`cdbench train <experiment>` -> `benchmark.training.loop.train_run`."""
    params, specs, runtime = _checked_runs(args)
    _check_crops(params, [args.experiment])
    from benchmark.training.loop import train_run

    for spec in specs:
        out = Path(args.checkpoints) / spec.name
        result = train_run(params, spec, out, runtime, tracking=not args.no_tracking)
        print(
            f"trained {spec.name}: {result.steps} steps (resumed at {result.resumed_from}), "
            f"best selection score {100 * result.best_score:.2f} % at step {result.best_step}, "
            f"checkpoints in {out}"
        )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    """`cdbench evaluate <experiment>` -> `benchmark.evaluation.evaluate.evaluate_run`."""
    params, specs, runtime = _checked_runs(args)
    from benchmark.evaluation.evaluate import evaluate_run

    weights = _weights_file(params, args)
    if weights is not None and len(specs) > 1:
        specs = specs[:1]  # one file, one evaluation: the experiment's first seed names it
    for spec in specs:
        metrics = evaluate_run(
            params,
            spec,
            Path(args.checkpoints) / spec.name,
            Path(args.reports),
            runtime,
            tracking=not args.no_tracking,
            allow_stale_checkpoint=args.allow_stale_checkpoint,
            weights=weights,
        )
        if weights is not None:
            print(
                f"{metrics['run']}: scored {weights} ({metrics['weights_provenance']}, "
                f"sha256 {metrics['weights_sha256']})"
            )
        if metrics["stale_checkpoint"]:
            print(
                f"{spec.name}: WARNING: scored from a stale checkpoint "
                f"(--allow-stale-checkpoint), recorded as such in "
                f"{Path(args.reports) / 'runs' / spec.name}.json; differing: "
                + "; ".join(metrics["stale_checkpoint"]["differences"] or ["(digest only)"]),
                file=sys.stderr,
            )
        prefixes = ["", "whole_"] if "whole_fixed/f1" in metrics else [""]
        for prefix in prefixes:
            print(
                f"{metrics['run']} {prefix or 'tiles_'}test: "
                f"F1 (%) fixed {100 * metrics[prefix + 'fixed/f1']:.2f}"
                f" | val threshold {100 * metrics[prefix + 'val_threshold/f1']:.2f}"
                f" | best on test (optimistic) "
                f"{100 * metrics[prefix + 'test_best_optimistic/f1']:.2f}"
            )
    return 0


def _weights_file(params: Params, args: argparse.Namespace) -> Path | None:
    """The checkpoint file of `--weights FILE` or `--released` (the model's released file at
    its fixed place, checked to be there); None: the trained run's own best.pt."""
    if args.released:
        from benchmark.models.released import released_path

        return released_path(params.experiment(args.experiment).model)
    return Path(args.weights) if args.weights else None


def cmd_predict(args: argparse.Namespace) -> int:
    """`cdbench predict <experiment> A B` -> `benchmark.infer.predict_pair`."""
    params = load_params(args.params)
    experiment = params.experiment(args.experiment)
    seed = args.seed if args.seed is not None else experiment.seeds[0]
    spec = RunSpec.of(args.experiment, experiment, seed)
    runtime = _runtime(params, args)
    from benchmark.infer import default_score_path, predict_pair, write_outputs

    change_path = Path(args.out)
    score_path = Path(args.out_score) if args.out_score else default_score_path(change_path)
    prediction = predict_pair(
        params,
        spec,
        Path(args.image_a),
        Path(args.image_b),
        Path(args.checkpoints) / spec.name,
        Path(args.reports),
        runtime,
        threshold=args.threshold,
        tile=args.tile,
        margin=args.margin,
        allow_stale_checkpoint=args.allow_stale_checkpoint,
        weights=_weights_file(params, args),
    )
    write_outputs(prediction, change_path, score_path)
    height, width = prediction.score.shape
    cut = (
        f"one pass, padded to {prediction.padded[1]} x {prediction.padded[0]}"
        if prediction.windows == 1
        else f"{prediction.windows} windows of {args.tile} x {args.tile} "
        f"(overlap {2 * args.margin})"
    )
    low, high = (float(prediction.score.min()), float(prediction.score.max()))
    step = "" if prediction.step is None else f", step {prediction.step}"
    print(
        f"{spec.name}: weights {prediction.checkpoint} ({prediction.provenance}{step}, "
        f"sha256 {prediction.sha256})\n"
        f"scored {width} x {height} pixels, {cut}, in {prediction.seconds:.1f} s\n"
        f"threshold: {prediction.kind} > {prediction.threshold.value:g}, "
        f"{prediction.threshold.source}\n"
        f"change map: {change_path} ({width} x {height}, 0/255; "
        f"{100 * float(prediction.change.mean()):.2f} % changed)\n"
        f"score map: {score_path} ({width} x {height}, {prediction.kind} "
        f"{low:.3f}..{high:.3f})"
    )
    return 0


def cmd_stages(args: argparse.Namespace) -> int:
    """`cdbench stages` -> `benchmark.stages.write_stages` (the generated stages of dvc.yaml)."""
    params = load_params(args.params)
    from benchmark.stages import check_stages, write_stages

    if args.check:
        check_stages(params, Path(args.dvc_yaml))
        print(
            f"{args.dvc_yaml}: the stages match params.yaml, and every stage's deps hold every "
            f"module of benchmark/ it imports"
        )
    else:
        write_stages(params, Path(args.dvc_yaml))
        print(
            f"{args.dvc_yaml}: stages written, train/evaluate for {len(params.runs())} runs, "
            f"deps from the imports"
        )
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """`cdbench runs` -> `benchmark.tracking.runs_table` (the MLflow runs, as a table)."""
    from benchmark.tracking import (
        format_runs_table,
        headline_links,
        prepare_tracking,
        runs_table,
        tracking_uri,
    )

    uri = tracking_uri()
    prepare_tracking(uri)
    names = [f"cdbench-{dataset}" for dataset in args.dataset] if args.dataset else None
    table = runs_table(names, uri=uri)
    if not args.all_metrics:
        keep = [c for c in table.columns if not c.startswith("test/") or c.endswith("/f1")]
        table = table[keep]
    print(f"MLflow tracking URI: {uri}")
    print(format_runs_table(table))
    if not table.empty:
        print("F1, IoU and every rate in percent; thresholds in the model's score unit")
    from benchmark.tracking.glance import LOCAL_UI, ui_address

    links = headline_links(names, uri=uri)
    if links:
        where = " (`mlflow ui` serves it)" if ui_address(uri) == LOCAL_UI else ""
        print(f"In the MLflow UI{where}, each experiment's runs with the headline columns:")
        for name, link in links.items():
            print(f"  {name}: {link}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """`cdbench report` -> `benchmark.reporting.report.write_report`."""
    params = load_params(args.params)
    from benchmark.losses import describe_loss
    from benchmark.reporting.report import write_report
    from benchmark.reporting.results import ExpectedRuns

    report = write_report(
        Path(args.reports),
        Path(args.references),
        tolerance=args.tolerance,
        resamples=args.resamples,
        tracking=not args.no_tracking,
        expected=ExpectedRuns.from_params(params, args.params),
        loss_forms={
            name: describe_loss(e.loss, **e.loss_options) for name, e in params.experiments.items()
        },
        manifests={d: params.data.prepared(d) / "manifest.json" for d in DATASETS},
    )
    _warn_ignored(report.ignored, args.params)
    print(
        f"report of {len(report.runs)} run(s) ({report.summary['experiment'].nunique()} "
        f"experiment(s)): {', '.join(str(p) for p in report.tables[:1])} and "
        f"{len(report.tables) - 1} more table(s), {len(report.figures)} figure(s) in "
        f"{Path(args.reports) / 'figures'}"
        + (f"; MLflow run {report.mlflow_run_id}" if report.mlflow_run_id else "")
    )
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """`cdbench bench` -> `benchmark.speed.bench.run_bench` (`--reproject`: `reproject`)."""
    params = load_params(args.params)
    from benchmark.run import resolve_device
    from benchmark.speed.bench import reproject, run_bench

    if args.reproject:
        reproject(params, Path(args.out))
        print(f"projection recomputed in {Path(args.out) / 'perf.json'} and perf.md")
        return 0
    if args.device is not None:
        check_device(args.device, "--device")
    device = resolve_device(args.device or params.runtime.device)
    workers = params.runtime.workers if args.workers is None else args.workers
    run_bench(
        params,
        args.model or ["bsfnet", "ifn"],
        device,
        Path(args.out),
        workers,
        compile=args.compile,
        loaders_too=not args.no_loaders,
        quick=args.quick,
        size=args.size,
    )
    print(f"written {Path(args.out) / 'perf.json'} and {Path(args.out) / 'perf.md'}")
    return 0


def cmd_parity(args: argparse.Namespace) -> int:
    """`cdbench parity` -> `benchmark.speed.parity.run_parity`."""
    params = load_params(args.params)
    from benchmark.run import resolve_device
    from benchmark.speed.parity import run_parity

    experiments = args.experiment or [
        name for name, e in params.experiments.items() if e.dataset == "synthetic"
    ]
    if args.device is not None:
        check_device(args.device, "--device")
    _check_crops(params, experiments)
    device = resolve_device(args.device or params.runtime.device)
    result = run_parity(
        params,
        experiments,
        device,
        Path(args.out),
        tolerance=args.tolerance,
        channels_last=args.channels_last,
        fused_optimizer=args.fused_optimizer,
        seed_noise=args.seed_noise,
    )
    print(f"written {Path(args.out) / 'parity.json'} and {Path(args.out) / 'parity.md'}")
    if not result["passed"]:
        failed = [r["experiment"] for r in result["experiments"] if not r["within_tolerance"]]
        print(f"optimised and baseline differ by more than {args.tolerance} points: {failed}")
        return 1
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """`cdbench doctor` -> `benchmark.doctor.diagnose` (exit 1 when a needed piece is missing)."""
    params = load_params(args.params)
    from benchmark.doctor import MISSING, chosen_experiments, diagnose, format_checks

    experiments = chosen_experiments(params, args.experiment or (), args.dataset or ())
    print(f"checking what {len(experiments)} experiment(s) need: {', '.join(experiments)}")
    checks = diagnose(params, experiments)
    print(format_checks(checks))
    return 1 if any(check.status == MISSING for check in checks) else 0


def _warn_ignored(paths: list[Path], params_path: str) -> None:
    if paths:
        print(
            f"ignored {len(paths)} metrics file(s) of runs that {params_path} does not list: "
            + ", ".join(str(path) for path in paths),
            file=sys.stderr,
        )


def cmd_check(args: argparse.Namespace) -> int:
    """`cdbench check` -> `benchmark.reporting.check.check` (exit 1 when a reference is missed)."""
    params = load_params(args.params)
    from benchmark.reporting.check import (
        check,
        default_profile,
        format_check,
        pixel_difference_baseline,
        write_check,
    )
    from benchmark.reporting.references import load_references
    from benchmark.reporting.results import ExpectedRuns, load_runs, stray_files

    references = load_references(Path(args.references))
    floor = (
        pixel_difference_baseline(params.data.prepared("synthetic"), args.min_gain_over_baseline)
        if args.min_gain_over_baseline is not None
        else None
    )
    metrics_dir = Path(args.reports) / "metrics"
    expected = ExpectedRuns.from_params(params, args.params)
    ignored = stray_files(metrics_dir, expected.identities)
    _warn_ignored(ignored, args.params)
    has_runs = any(path.stem in expected.identities for path in metrics_dir.glob("*.json"))
    runs = load_runs(metrics_dir, expected) if has_runs else None
    profile = args.profile
    if profile is None:
        profile, why = default_profile(runs, references)
        print(f"profile {profile}: {why} (choose with --profile demo|full)")
    result = check(
        runs,
        references,
        profile,
        tolerance=args.tolerance,
        metrics=tuple(args.metric or ["f1"]),
        fail_missing=args.fail_missing,
        expected=expected,
        allow_missing_seeds=args.allow_missing_seeds,
        allow_stale=args.allow_stale_checkpoint,
        floor=floor,
    )
    out = Path(args.out) if args.out else Path(args.reports) / "check.json"
    write_check(result, out)
    print(format_check(result))
    print(f"written to {out}")
    from benchmark.tracking.verdict import attach_check

    report_run = attach_check(result.passed, profile, out, Path(args.reports))
    if report_run:
        print(f"verdict attached to MLflow report run {report_run}")
    return 0 if result.passed else 1


def cmd_launch(args: argparse.Namespace) -> int:
    """`cdbench launch` -> `benchmark.launch.launch` (the pending train stages, in parallel)."""
    from benchmark.launch import launch, summary
    from benchmark.launch.slurm import SlurmOptions

    devices = None if args.devices is None else [d for d in args.devices.split(",") if d]
    slurm = SlurmOptions(
        partition=args.partition, time_min=args.time, gpus=args.gpus, cpus=args.cpus,
        mem_gb=args.mem, account=args.account, qos=args.qos, constraint=args.constraint,
    )  # fmt: skip
    outcomes, chosen = launch(
        Path.cwd(), args.runs, args.glob, executor=args.executor, workers=args.workers,
        devices=devices, pack=args.pack, threads=args.threads,
        logs=Path(args.logs) if args.logs else None,
        slurm=slurm,
    )  # fmt: skip
    line, status = summary(outcomes, chosen)
    print(line, file=sys.stderr if status else sys.stdout)
    return status


DESCRIPTIONS = {
    "download": "Fetch a dataset's archives into data/raw/<dataset>/ and check their md5 where "
    "one is published; an interrupted download resumes. Offline, the error names each file "
    "and where to put it.",
    "prepare": "Extract a dataset's archives safely, check the official split sizes, tile "
    "LEVIR-CD into 256 x 256 tiles (keeping the whole images) and write the prepared layout "
    "data/prepared/<dataset>/{train,val,test}/{A,B,label}/ with its manifest.json.",
    "synth": "Generate the built-in synthetic change-detection dataset (params.yaml synth:) "
    "and score the pixel-difference baseline on its test split.",
    "models": "Print every model's parameter count and GFLOPs at a given input size.",
    "weights": "Fetch the encoders' ImageNet weights (ResNet-50 for BSFNet, VGG16 for IFN) "
    "into data.weights_dir and check each file's SHA-256 against its name.",
    "train": "Train one experiment (each seed, or --seed N) under its recipe, saving "
    "checkpoints/<run>/ and recording the run in MLflow; rerunning resumes from the last "
    "checkpoint of the same configuration.",
    "evaluate": "Score a trained run's selected checkpoint on the test split under every "
    "protocol (fixed threshold, validation-chosen threshold, best on test), writing "
    "reports/metrics/<run>.json, curves, per-image counts and prediction maps.",
    "stages": "Regenerate the train/evaluate stages of dvc.yaml from params.yaml's "
    "experiments, each stage's deps from the modules it imports (--check: only compare).",
    "runs": "List the runs recorded in MLflow with their test F1, one line per run.",
    "report": "Compare our results with the published ones: tables (comparison, ablation) and "
    "figures in reports/, recorded as an MLflow run.",
    "bench": "Measure training and inference throughput, memory and data-loader speed, and "
    "project the hours each experiment will take.",
    "parity": "Train the same seed with and without the optimised settings and compare the F1s.",
    "check": "Fail (exit 1) when a result falls short of its reference in references.yaml.",
    "launch": "Train every train stage of dvc.yaml that is not up to date (or the chosen ones), "
    "each through its own command, then record it with `dvc commit`.",
}
"""Each subcommand's description in its --help (the one-line `help` is the command list's)."""


def _experiments_help(params_path: str) -> str:
    """The experiments params.yaml defines, listed for --help; --help must work without the
    file, so nothing is checked here (each command checks params.yaml first)."""
    import yaml

    try:
        names = list(yaml.safe_load(Path(params_path).read_text())["experiments"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return f"an experiment of {params_path}"
    return f"an experiment of {params_path}: {', '.join(str(name) for name in names)}"


def _add_run_arguments(p: argparse.ArgumentParser, experiments: str) -> None:
    p.add_argument("experiment", help=experiments)
    p.add_argument("--seed", type=int, help="one of the experiment's seeds (default: all)")
    p.add_argument(
        "--checkpoints", default="checkpoints", help="checkpoint root (default: checkpoints)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: runtime.device)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, help="bf16 autocast")
    p.add_argument(
        "--channels-last", action=argparse.BooleanOptionalAction, help="channels_last format"
    )
    p.add_argument("--workers", type=int, help="data-loading processes")
    p.add_argument("--no-tracking", action="store_true", help="do not record the run in MLflow")


def _add_report_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reports", default="reports", help="reports folder (default: reports)")
    p.add_argument(
        "--references",
        default="references.yaml",
        help="reference scores (default: references.yaml)",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        default=1.0,
        help="points below a reference still accepted, where its row sets none (default 1.0)",
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; `argv` is pre-read for --params, whose experiments the help lists."""
    from importlib.metadata import version

    parser = argparse.ArgumentParser(
        prog="cdbench",
        description="Reproducibility benchmark for change detection (BSFNet, IFN; CDD, LEVIR-CD).",
    )
    parser.add_argument(
        "--params", default="params.yaml", help="parameters file (default: params.yaml)"
    )
    parser.add_argument("--version", action="version", version=f"cdbench {version('cdbench')}")
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("--params", default="params.yaml")
    experiments = _experiments_help(first.parse_known_args(argv)[0].params)
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    chat.add_argument(
        "-v", "--verbose", action="store_true", help="show libraries' INFO lines (MLflow's too)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("download", help="fetch and verify a dataset's archives")
    p.add_argument("dataset", choices=REAL_DATASETS)
    p.add_argument("--out", help="folder for the archives (default: data/raw/<dataset>)")
    p.set_defaults(func=cmd_download)

    p = sub.add_parser("prepare", help="extract, check and tile a dataset into the prepared layout")
    p.add_argument("dataset", choices=REAL_DATASETS)
    p.add_argument("--raw", help="folder holding the archives (default: data/raw/<dataset>)")
    p.add_argument("--out", help="output folder (default: data/prepared/<dataset>)")
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help=(
            "accept split sizes other than the official archives' (LEVIR-CD 445/64/128 "
            "images, CDD 10000/2998/3000 pairs; recorded in the manifest)"
        ),
    )
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("synth", help="generate the built-in synthetic change-detection dataset")
    p.add_argument("--out", help="output folder (default: data/prepared/synthetic)")
    p.add_argument("--seed", type=int, help="random seed (default: synth.seed in params.yaml)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("models", help="parameters and GFLOPs of every model")
    p.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("weights", help="fetch and verify the encoders' ImageNet weights")
    p.add_argument("--out", help="folder for the weight files (default: data.weights_dir)")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("train", help="train an experiment (resumes from its last checkpoint)")
    _add_run_arguments(p, experiments)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", help="evaluate a trained experiment under every protocol")
    _add_run_arguments(p, experiments)
    p.add_argument("--reports", default="reports", help="reports folder (default: reports)")
    p.add_argument(
        "--allow-stale-checkpoint",
        action="store_true",
        help="score a checkpoint trained under another configuration (recorded as stale)",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--weights",
        metavar="FILE",
        help="score this checkpoint file instead of the trained run (ours, or an author's "
        "released one); written as run <run>-released / <run>-weights",
    )
    source.add_argument(
        "--released",
        action="store_true",
        help="score the model's released checkpoint from its fixed place, data/released/<file> "
        "(downloaded by hand; the error says from where)",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="a trained run's change map for your own pair of images, of any size",
        description="Score a pair of co-registered RGB images (the first date, then the "
        "second) with an experiment's selected checkpoint (checkpoints/<run>/best.pt, or "
        "--weights FILE / --released), normalised as in training; pad to a multiple of 32, "
        "or tile with overlap above --tile pixels; write the change map (PNG, 0/255) at "
        "the run's validation-chosen threshold and the score map (distance or probability).",
    )
    p.add_argument("experiment", help=experiments)
    p.add_argument("image_a", metavar="A", help="the image of the first date")
    p.add_argument("image_b", metavar="B", help="the image of the second date, same size")
    p.add_argument("--seed", type=int, help="one of the experiment's seeds (default: its first)")
    p.add_argument("--out", default="change.png", help="the change map (default: change.png)")
    p.add_argument(
        "--out-score",
        help="the score map: .npy (float32) or .png (8-bit over the score's range); "
        "default: <out>-score.npy",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="change where score > this (default: the run's validation-chosen threshold, "
        "from reports/metrics/<run>.json, else from its training summary)",
    )
    p.add_argument(
        "--tile", type=int, default=1024, help="largest window side, a multiple of 32 (1024)"
    )
    p.add_argument(
        "--margin", type=int, default=64, help="context cut from each side of a window (64)"
    )
    p.add_argument(
        "--checkpoints", default="checkpoints", help="checkpoint root (default: checkpoints)"
    )
    p.add_argument("--reports", default="reports", help="reports folder (default: reports)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: runtime.device)")
    p.add_argument(
        "--allow-stale-checkpoint",
        action="store_true",
        help="use a checkpoint trained under another configuration",
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument(
        "--weights",
        metavar="FILE",
        help="use this checkpoint file instead of the trained run's best.pt (ours, or an "
        "author's released one); threshold: --threshold, else the one `evaluate --weights` "
        "chose for this file, else the recipe's fixed one",
    )
    source.add_argument(
        "--released",
        action="store_true",
        help="use the model's released checkpoint from its fixed place, data/released/<file> "
        "(downloaded by hand; the error says from where)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "stages", help="write dvc.yaml's stages: runs from params.yaml, deps from the imports"
    )
    p.add_argument("--dvc-yaml", default="dvc.yaml", help="the file (default: dvc.yaml)")
    p.add_argument(
        "--check",
        action="store_true",
        help="only check: fail when a stage lacks a module it imports, or the file is out of date",
    )
    p.set_defaults(func=cmd_stages)

    p = sub.add_parser("runs", help="list the runs recorded in MLflow")
    p.add_argument(
        "--dataset",
        action="append",
        choices=tuple(DATASETS),
        help="only this dataset's runs (repeatable)",
    )
    p.add_argument("--all-metrics", action="store_true", help="every test metric, not only the F1s")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("report", help="tables and figures: our results against the references")
    _add_report_arguments(p)
    p.add_argument(
        "--resamples", type=int, default=1000, help="bootstrap resamples of the test images"
    )
    p.add_argument("--no-tracking", action="store_true", help="do not record the report in MLflow")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("bench", help="throughput, memory and data-loader speed; time projection")
    p.add_argument("--model", action="append", choices=("bsfnet", "ifn"), help="(repeatable)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: runtime.device)")
    p.add_argument("--workers", type=int, help="data-loading processes (default: runtime.workers)")
    p.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        help="torch.compile in the optimised setting (default: on CUDA only)",
    )
    p.add_argument("--no-loaders", action="store_true", help="skip the data-loader measurements")
    p.add_argument("--quick", action="store_true", help="fewer timed windows and smaller data")
    p.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    p.add_argument("--out", default="reports", help="folder of perf.json and perf.md")
    p.add_argument(
        "--reproject",
        action="store_true",
        help="measure nothing: recompute the projection of OUT/perf.json for params.yaml",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("parity", help="same seed with and without the optimisations: same F1?")
    p.add_argument(
        "--experiment", action="append", help="(repeatable; default: the synthetic demo's)"
    )
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N (default: runtime.device)")
    p.add_argument(
        "--tolerance", type=float, default=0.5, help="points of F1 allowed (default 0.5)"
    )
    p.add_argument(
        "--channels-last",
        action="store_true",
        help="channels_last in the optimised runtime on the CPU too (on CUDA it always is)",
    )
    p.add_argument(
        "--fused-optimizer",
        action="store_true",
        help="the fused optimiser in the optimised runtime on the CPU too (on CUDA it always is)",
    )
    p.add_argument(
        "--seed-noise",
        action="store_true",
        help="also train the baseline with the next seed: the seed-to-seed difference",
    )
    p.add_argument("--out", default="reports", help="folder of parity.json and parity.md")
    p.set_defaults(func=cmd_parity)

    p = sub.add_parser("check", help="fail when a reference score is not reached")
    _add_report_arguments(p)
    p.add_argument(
        "--profile",
        choices=("demo", "full"),
        help="demo: the synthetic references (CI); full: the published ones; default: full "
        "when a CDD or LEVIR-CD run is evaluated, else demo when a synthetic one is",
    )
    p.add_argument(
        "--metric",
        action="append",
        choices=("precision", "recall", "f1", "iou", "oa"),
        help="a figure to gate on (repeatable; default: f1)",
    )
    p.add_argument(
        "--fail-missing",
        action="store_true",
        help="a reference whose values are not transcribed fails instead of being listed",
    )
    p.add_argument(
        "--allow-missing-seeds",
        action="store_true",
        help="an experiment with fewer evaluated seeds than params.yaml lists may pass (noted)",
    )
    p.add_argument(
        "--allow-stale-checkpoint",
        action="store_true",
        help="a run scored from a stale checkpoint (evaluate --allow-stale-checkpoint) may pass",
    )
    p.add_argument(
        "--min-gain-over-baseline",
        type=float,
        metavar="POINTS",
        help="also fail any synthetic run whose val-chosen F1 is below the pixel-difference "
        "baseline (data manifest) + POINTS (default: not checked; make demo uses 10)",
    )
    p.add_argument("--out", help="the JSON result (default: <reports>/check.json)")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser(
        "launch",
        help="train the pending runs in parallel: one per GPU, or one SLURM job each",
        description="Train every train stage of dvc.yaml that is not up to date (or the chosen "
        "ones), each through its own command, then record it with `dvc commit`.",
    )
    p.add_argument("runs", nargs="*", help="experiments (every seed) or runs; default: all")
    p.add_argument("--glob", action="append", default=[], help="runs matching a pattern")
    p.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local")
    p.add_argument("--workers", type=int, help="runs at once (local; default: one per GPU)")
    p.add_argument("--devices", help="GPUs to use, e.g. 0,1,3 (default: every visible GPU)")
    p.add_argument("--pack", type=int, default=1, help="runs per GPU (default: 1)")
    p.add_argument(
        "--threads", type=int, help="CPU threads per run (default on the CPU: cores // workers)"
    )
    p.add_argument("--logs", help="the logs' folder (default: logs/launch)")
    p.add_argument("--partition", help="SLURM partition")
    p.add_argument("--time", type=int, default=24 * 60, help="SLURM time limit per job, minutes")
    p.add_argument("--gpus", type=int, default=1, help="GPUs per SLURM job (default: 1)")
    p.add_argument("--cpus", type=int, default=8, help="CPUs per SLURM job (default: 8)")
    p.add_argument("--mem", type=int, help="memory per SLURM job, GB")
    p.add_argument("--account", help="SLURM account")
    p.add_argument("--qos", help="SLURM quality of service")
    p.add_argument("--constraint", help="SLURM node constraint (e.g. a GPU model)")
    p.set_defaults(func=cmd_launch)

    p = sub.add_parser(
        "doctor",
        help="check that everything a run needs is here, and how to fix what is not",
        description="Check, one line each, what the chosen experiments (default: all) need "
        "before a run: Python and torch, the ImageNet weights (SHA-256), bsdtar/unar, the "
        "datasets, free disk, the GPU, the MLflow store and DVC; each missing piece with the "
        "command or file that fixes it. Exit status 1 when something needed is missing.",
    )
    p.add_argument("--experiment", action="append", help=f"(repeatable) {experiments}")
    p.add_argument(
        "--dataset", action="append", choices=tuple(DATASETS), help="its experiments (repeatable)"
    )
    p.set_defaults(func=cmd_doctor)

    for name, command in sub.choices.items():
        command.description = command.description or DESCRIPTIONS[name]
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    configure_output(quiet=args.quiet, verbose=args.verbose)
    try:
        status: int = args.func(args)
        return status
    except CdbenchError as exc:
        print(f"cdbench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cdbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
