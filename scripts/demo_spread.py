"""Measure the spread of the synthetic demo across seeds and CPU kernel paths.

A short training from scratch is chaotic: a change of seed, or of the CPU's convolution
kernels (oneDNN picks AVX-512, AVX2, AVX or SSE4.1 code paths by CPU; the number of threads
changes the order of its reductions), moves the result like a different seed. This script
trains one demo experiment for each (seed, kernel path), each in a fresh process with the
kernel path set in its environment, scores it with `cdbench evaluate`'s protocols, and prints
one JSON line per run and, at the end, the `spread` mapping to paste into the experiment's
demo rows of references.yaml (benchmark/reporting/references.py `Spread`).

A kernel path is a set of environment variables, e.g. `ONEDNN_MAX_CPU_ISA=AVX2` (oneDNN uses
no ISA above it) or `OMP_NUM_THREADS=1`; `default` runs with the machine's own. A machine can
emulate only the ISAs its CPU has (an AVX2 machine cannot run AVX-512 kernels), and a cap is
not the smaller CPU: `ONEDNN_MAX_CPU_ISA` holds back oneDNN alone, not ATen's own vectorised
kernels. So each run line also records the CPU's widest vector ISA (`cpu`: avx512, avx2, ...),
and runs are told apart by path and CPU ("OMP_NUM_THREADS=1 on avx512"; a line without `cpu`
is named by its path alone).

    python scripts/demo_spread.py bsfnet-sisb-synthetic --seeds 0 1 2 3 4 \\
        --path default --path ONEDNN_MAX_CPU_ISA=AVX --path OMP_NUM_THREADS=1 [--jobs 2]

`--summarise RUNS.jsonl ...` reads such run lines (any experiments, any number of files, a
later line for the same experiment, seed and path replacing an earlier one) and prints the
`demo:` rows of references.yaml: per experiment and protocol the spread of its runs, and per
protocol the pooled within-experiment std (`Spread.pooled_std`), which the derived tolerance
uses when it is larger than a row's own:

    python scripts/demo_spread.py bsfnet-bce-synthetic --seeds 0 1 2 | grep '^{' >> runs.jsonl
    python scripts/demo_spread.py --summarise runs.jsonl

`--check-paths RUNS.jsonl ...` judges those runs against the demo rows of references.yaml the
way `cdbench check --profile demo --min-gain-over-baseline 10` judges the demo's own run: per
kernel path, every run alone (as if it were the demo's one seed on a machine with that path)
and the mean over the path's seeds, each with `references.tolerance_for`'s tolerance, and
every run against the pixel-difference baseline + 10 points. It exits 1 if any fails.

Runs go to a scratch folder (no MLflow, no DVC); the synthetic data is generated there from
params.yaml's `synth` section. `--jobs N` runs N trainings at once, each with
`OMP_NUM_THREADS=2/N` threads unless the path sets its own (the thread count is part of the
path, and is printed with each run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def train_and_score(experiment: str, seed: int, params_path: str, folder: str) -> dict[str, object]:
    """Train one run in this process and return its test F1s (points) and what it ran on."""
    import torch

    from benchmark.config import RunSpec, load_params
    from benchmark.evaluation.evaluate import evaluate_run
    from benchmark.training.loop import train_run

    params = load_params(params_path)
    config = params.experiment(experiment)
    spec = RunSpec.of(experiment, config, seed)
    out = Path(folder)
    train_run(params, spec, out / "checkpoints", tracking=False)
    metrics = evaluate_run(params, spec, out / "checkpoints", out / "reports", tracking=False)
    return {
        "experiment": experiment,
        "seed": seed,
        "threads": torch.get_num_threads(),
        "onednn_max_cpu_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "default"),
        "cpu": cpu_isa(),
        "val_threshold_f1": round(100 * float(metrics["val_threshold/f1"]), 2),
        "fixed_f1": round(100 * float(metrics["fixed/f1"]), 2),
        "selected_step": metrics["selected_step"],
    }


PROTOCOLS = {"val_threshold": "val_threshold_f1", "fixed": "fixed_f1"}


def cpu_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The widest x86 vector ISA this CPU has: "avx512" (AVX-512 F), "avx2", "avx" or
    "sse" (from the flags of /proc/cpuinfo; "unknown" where it cannot be read)."""
    try:
        flags = next(
            (line.split(":", 1)[1].split() for line in cpuinfo.read_text().splitlines()
             if line.startswith("flags")),
            [],
        )  # fmt: skip
    except OSError:
        return "unknown"
    for isa, flag in (("avx512", "avx512f"), ("avx2", "avx2"), ("avx", "avx")):
        if flag in flags:
            return isa
    return "sse" if flags else "unknown"


def kernel_path(run: dict[str, object]) -> str:
    """A run line's kernel path with its CPU: "OMP_NUM_THREADS=1 on avx512" (the path alone
    for a line that records no CPU)."""
    return f"{run['path']} on {run['cpu']}" if "cpu" in run else str(run["path"])


def read_runs(paths: list[str]) -> dict[tuple[str, int, str], dict[str, object]]:
    """The run lines of `paths` by (experiment, seed, `kernel_path`); a later line replaces
    an earlier one."""
    runs: dict[tuple[str, int, str], dict[str, object]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if line.startswith("{"):
                run = json.loads(line)
                runs[(str(run["experiment"]), int(run["seed"]), kernel_path(run))] = run
    return runs


def summarise(paths: list[str], params_path: str) -> str:
    """The `demo:` rows of references.yaml for the runs listed in `paths` (JSON lines)."""
    import math

    from benchmark.config import load_params

    runs = read_runs(paths)
    by_experiment: dict[str, list[dict[str, object]]] = {}
    for (experiment, _, _), run in sorted(runs.items()):
        by_experiment.setdefault(experiment, []).append(run)
    pooled: dict[str, float] = {}
    for protocol, key in PROTOCOLS.items():
        squares, dof = 0.0, 0
        for group in by_experiment.values():
            values = [float(r[key]) for r in group]  # type: ignore[arg-type]
            mean = statistics.mean(values)
            squares += sum((v - mean) ** 2 for v in values)
            dof += len(values) - 1
        pooled[protocol] = round(math.sqrt(squares / dof), 2) if dof else 0.0
    params = load_params(params_path)
    lines = []
    for experiment, group in by_experiment.items():
        config = params.experiment(experiment)
        seeds = sorted({int(r["seed"]) for r in group})  # type: ignore[call-overload]
        kernel_paths = sorted({kernel_path(r) for r in group})
        command = (
            f"python scripts/demo_spread.py {experiment} --seeds {' '.join(map(str, seeds))} "
            + " ".join(f"--path {p}" for p in sorted({str(r["path"]) for r in group}))
            + "; python scripts/demo_spread.py --summarise runs.jsonl"
        )
        for protocol, key in PROTOCOLS.items():
            values = [float(r[key]) for r in group]  # type: ignore[arg-type]
            mean = round(statistics.mean(values), 2)
            lines += [
                f"  - model: {config.model}",
                f"    loss: {config.loss}",
                "    dataset: synthetic",
                f"    protocol: {protocol}",
                f"    values: {{f1: {mean}}}",
                "    spread:",
                f"      mean: {mean}",
                f"      std: {round(statistics.stdev(values), 2) if len(values) > 1 else 0.0}",
                f"      pooled_std: {pooled[protocol]}",
                f"      min: {min(values)}",
                f"      max: {max(values)}",
                f"      runs: {len(values)}",
                f"      seeds: {seeds}",
                f"      kernel_paths: {json.dumps(kernel_paths)}",
                f"      command: {json.dumps(command)}",
            ]
    return "\n".join(lines)


def check_paths(paths: list[str], params_path: str, gain: float = 10.0) -> tuple[str, bool]:
    """Markdown tables judging the run lines in `paths` per kernel path (see the docstring)."""
    from benchmark.config import load_params
    from benchmark.data.synth import generate_synthetic
    from benchmark.reporting.check import pixel_difference_baseline
    from benchmark.reporting.references import for_profile, load_references, tolerance_for

    runs = read_runs(paths)
    params = load_params(params_path)
    with tempfile.TemporaryDirectory(prefix="demo-spread-baseline-") as tmp:
        prepared = Path(tmp) / "synthetic"
        generate_synthetic(prepared, params.synth)
        floor = pixel_difference_baseline(prepared, gain)
    references = for_profile(load_references(ROOT / "references.yaml"), "demo")
    passed = True
    out = [
        f"Floor: pixel-difference baseline {floor.baseline_f1:.2f} + {gain:g} = "
        f"{floor.floor:.2f} val-chosen F1 for every run."
    ]
    for kernel_path in sorted({key[2] for key in runs}):
        out += [
            "",
            f"Kernel path `{kernel_path}`:",
            "",
            "| experiment | protocol | runs (seed: F1) | reference | tolerance, one run "
            "| worst margin | mean over seeds (tolerance) | floor margin | status |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for experiment in sorted({key[0] for key in runs if key[2] == kernel_path}):
            config = params.experiment(experiment)
            group = sorted(
                (seed, run)
                for (e, seed, p), run in runs.items()
                if e == experiment and p == kernel_path
            )
            for protocol, key in PROTOCOLS.items():
                reference = next(
                    r
                    for r in references
                    if r.key == (config.model, config.loss, "synthetic", protocol)
                )
                published = reference.values.as_dict()["f1"]
                values = [float(run[key]) for _, run in group]  # type: ignore[arg-type]
                one = tolerance_for(reference, 1, 1.0).value
                many = tolerance_for(reference, len(values), 1.0).value
                margin = min(values) - (published - one)
                mean = statistics.mean(values)
                mean_ok = mean >= published - many
                floor_margin = min(values) - floor.floor if protocol == "val_threshold" else None
                ok = margin >= 0 and mean_ok and (floor_margin is None or floor_margin >= 0)
                passed &= ok
                listed = ", ".join(
                    f"s{seed}: {value:.2f}" for (seed, _), value in zip(group, values, strict=True)
                )
                out.append(
                    f"| {experiment} | {protocol} | {listed} | {published:.2f} | {one:.2f} "
                    f"| {margin:+.2f} | {mean:.2f} ({many:.2f}) | "
                    + ("" if floor_margin is None else f"{floor_margin:+.2f}")
                    + f" | {'pass' if ok else 'FAIL'} |"
                )
    return "\n".join(out), passed


def _scratch_params(params_path: Path, scratch: Path, experiment: str, seeds: list[int]) -> Path:
    """params.yaml with the data in `scratch` and `seeds` listed for `experiment`."""
    import yaml

    raw = yaml.safe_load(params_path.read_text())
    raw["data"]["prepared_dir"] = str(scratch / "prepared")
    raw["experiments"][experiment]["seeds"] = seeds
    raw["runtime"].update(progress=False, system_metrics=False, checkpoint_every=10**9)
    path = scratch / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _environment(path: str, jobs: int) -> dict[str, str]:
    env = dict(os.environ)
    if path != "default":
        for assignment in path.split(","):
            key, _, value = assignment.partition("=")
            env[key] = value
    env.setdefault("OMP_NUM_THREADS", str(max(1, 2 // jobs)))
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("experiment", nargs="?", help="a demo experiment of params.yaml")
    parser.add_argument(
        "--summarise", nargs="+", metavar="RUNS", help="print references.yaml rows for run lines"
    )
    parser.add_argument(
        "--check-paths", nargs="+", metavar="RUNS", help="judge run lines per kernel path"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument(
        "--path",
        action="append",
        help="a kernel path: `default` or VAR=VALUE[,VAR=VALUE] (repeat; default: default)",
    )
    parser.add_argument("--params", default=str(ROOT / "params.yaml"))
    parser.add_argument("--jobs", type=int, default=1, help="trainings at once")
    parser.add_argument("--one", nargs=2, metavar=("SEED", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.summarise:
        print(summarise(args.summarise, args.params))
        return 0
    if args.check_paths:
        text, passed = check_paths(args.check_paths, args.params)
        print(text)
        return 0 if passed else 1
    if not args.experiment:
        parser.error("give an experiment, or --summarise RUNS.jsonl")
    if args.one:  # the child process: one run
        result = train_and_score(args.experiment, int(args.one[0]), args.params, args.one[1])
        print("RESULT " + json.dumps(result), flush=True)
        return 0

    from benchmark.config import load_params
    from benchmark.data.synth import generate_synthetic

    paths = args.path or ["default"]
    with tempfile.TemporaryDirectory(prefix="demo-spread-") as tmp:
        scratch = Path(tmp)
        params_path = _scratch_params(Path(args.params), scratch, args.experiment, args.seeds)
        generate_synthetic(scratch / "prepared" / "synthetic", load_params(params_path).synth)

        def one(job: tuple[int, str]) -> dict[str, object]:
            seed, path = job
            folder = scratch / "runs" / f"{seed}-{abs(hash(path))}"
            command = [sys.executable, __file__, args.experiment, "--params", str(params_path)]
            done = subprocess.run(
                [*command, "--one", str(seed), str(folder)],
                env=_environment(path, args.jobs),
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
            if done.returncode or not lines:
                raise RuntimeError(f"seed {seed}, path {path}: failed\n{done.stderr[-3000:]}")
            result = {**json.loads(lines[-1][len("RESULT ") :]), "path": path}
            print(json.dumps(result), flush=True)
            return result

        jobs = [(seed, path) for path in paths for seed in args.seeds]
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(one, jobs))

    for protocol in ("val_threshold_f1", "fixed_f1"):
        values = [float(r[protocol]) for r in results]  # type: ignore[arg-type]
        spread = {
            "mean": round(statistics.mean(values), 2),
            "std": round(statistics.stdev(values), 2) if len(values) > 1 else 0.0,
            "min": min(values),
            "max": max(values),
            "runs": len(values),
            "seeds": args.seeds,
            "kernel_paths": paths,
        }
        print(f"{protocol}: {json.dumps(spread)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
