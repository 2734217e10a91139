"""`cdbench parity`: the optimisations must not change the results beyond noise.

For each experiment (by default the synthetic demo's), its first seed is trained twice from
scratch, in a scratch folder, without MLflow: once in the `baseline` runtime (fp32, NCHW
tensors, the for-each optimiser, eager) and once in the `optimised` runtime of `cdbench bench`
for the device (benchmark/speed/measure.py: on CUDA the fused optimiser, channels_last, bf16
autocast and torch.compile; on the CPU nothing that changes the arithmetic), to which
`--fused-optimizer` and `--channels-last` add those switches on any device, to measure what
they do where they are not the faster choice. Both use the same data path (the
decoded-pairs cache, uint8 batches normalised on the device: that path gives the same tensors
as decoding the PNGs, tests/test_cache.py).

What is compared: the selected model (`best.pt`) of each runtime, scored on the WHOLE
validation split: its F1 at the best threshold of a sweep (`max_f1`; the threshold-free
figure), which must agree within `tolerance` points (0.5 by default); the recipe's selection
score (the demo's: F1 at the fixed threshold on 16 validation pairs) is reported beside it.
The optimisations change floating-point rounding (the fused Adam step differs from the
for-each one by about one unit in the last place), and a 100-step training from scratch
amplifies such differences: the fixed-threshold F1 of the demo moves by points between the two
runtimes, as it does between seeds (reports/comparison.md), which is why the threshold-free
figure on the whole split is the one held to the tolerance.

How big is "noise" here? With `--seed-noise` the baseline is also trained with the next seed,
and the report gives the seed-to-seed difference of the same runtime beside the difference the
optimisations make: a difference beyond the tolerance but within the seed-to-seed one says
the protocol, not the optimisation, is what moves (measured: reports/parity-fused-cpu.md).

Writes `reports/parity.json` and `reports/parity.md`.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmark import checkpoint
from benchmark.config import Params, RunSpec, RuntimeConfig
from benchmark.errors import ConfigError
from benchmark.run import prepared_root, to_scoring_device, untrained
from benchmark.speed.measure import optimised

TOLERANCE = 0.5
"""Points of validation F1 by which the two runtimes may differ."""


def runtimes(
    base: RuntimeConfig,
    device: torch.device,
    channels_last: bool = False,
    fused_optimizer: bool = False,
) -> dict[str, RuntimeConfig]:
    """The baseline and optimised runtimes on `device`, quiet (no progress, no system
    metrics) and checkpointing only at validations."""
    quiet = dataclasses.replace(
        base, device=str(device), progress=False, system_metrics=False, checkpoint_every=10**9
    )
    fast = optimised(device)
    return {
        "baseline": dataclasses.replace(
            quiet, bf16=False, channels_last=False, fused_optimizer=False, compile=False
        ),
        "optimised": dataclasses.replace(
            quiet,
            bf16=fast.bf16,
            channels_last=fast.channels_last or channels_last,
            fused_optimizer=fast.fused or fused_optimizer,
            compile=fast.compile,
        ),
    }


def run_parity(
    params: Params,
    experiments: list[str],
    device: torch.device,
    out: Path,
    tolerance: float = TOLERANCE,
    channels_last: bool = False,
    fused_optimizer: bool = False,
    seed_noise: bool = False,
) -> dict[str, Any]:
    """Train, compare, write `out/parity.json` and `out/parity.md`; return the comparison.
    `seed_noise`: also train the baseline with the next seed (module docstring)."""
    from benchmark.training.loop import train_run

    unknown = sorted(set(experiments) - set(params.experiments))
    if unknown:
        raise ConfigError(f"--experiment: unknown {unknown}; see experiments in params.yaml")
    settings = runtimes(params.runtime, device, channels_last, fused_optimizer)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cdbench-parity-") as scratch:
        for name in experiments:
            experiment = params.experiments[name]
            spec = RunSpec.of(name, experiment, experiment.seeds[0])
            recipe = params.recipes[experiment.recipe]
            split, metric = recipe.selection_split, recipe.selection_metric
            row: dict[str, Any] = {
                "experiment": name,
                "seed": spec.seed,
                "selection": f"{split}/{metric}",
            }
            runs = [(setting, runtime, spec) for setting, runtime in settings.items()]
            if seed_noise:
                other = spec.seed + 1
                noise_spec = RunSpec(spec.experiment, other, f"{spec.experiment}-s{other}")
                runs.append(("baseline_next_seed", settings["baseline"], noise_spec))
            for setting, runtime, run_spec in runs:
                folder = Path(scratch) / setting / run_spec.name
                trained = train_run(params, run_spec, folder, runtime, tracking=False)
                history = torch.load(folder / "last.pt", weights_only=False)["history"]
                max_f1 = 100 * validation_max_f1(params, run_spec, folder, runtime)
                row[setting] = {
                    "seed": run_spec.seed,
                    "runtime": dataclasses.asdict(runtime),
                    "val_max_f1": max_f1,
                    "selection": 100 * trained.best_score,
                    "best_step": trained.best_step,
                    "seconds": trained.seconds,
                    "validations": [
                        {"step": r["step"], "score": 100 * r[f"{split}/selection"]}
                        for r in history
                        if f"{split}/selection" in r
                    ],
                }
                print(
                    f"{name} seed {run_spec.seed} {setting}: validation max F1 {max_f1:.2f}, "
                    f"selection ({split} {metric}) {100 * trained.best_score:.2f} at step "
                    f"{trained.best_step} ({trained.seconds:.0f} s)",
                    flush=True,
                )
            row["difference"] = row["optimised"]["val_max_f1"] - row["baseline"]["val_max_f1"]
            row["within_tolerance"] = abs(row["difference"]) <= tolerance
            if seed_noise:
                noise = row["baseline_next_seed"]["val_max_f1"] - row["baseline"]["val_max_f1"]
                row["seed_difference"] = noise
                row["within_seed_difference"] = abs(row["difference"]) <= abs(noise)
            rows.append(row)
    result: dict[str, Any] = {
        "device": str(device),
        "torch": torch.__version__,
        "tolerance": tolerance,
        "runtimes": {name: dataclasses.asdict(r) for name, r in settings.items()},
        "experiments": rows,
        "passed": all(row["within_tolerance"] for row in rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "parity.md").write_text(render_parity(result))
    return result


def validation_max_f1(params: Params, spec: RunSpec, folder: Path, runtime: RuntimeConfig) -> float:
    """F1 (0..1) of `folder/best.pt` on the whole validation split at the best threshold of
    the sweep, computed in `runtime`'s precision and memory format."""
    from benchmark.evaluation.evaluate import score_named_split
    from benchmark.evaluation.predict import score_kind, selection_score

    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    trainable = untrained(experiment, recipe)
    trainable.load_state_dict(checkpoint.load(folder / "best.pt")["model_and_loss"])
    device = to_scoring_device(trainable, runtime)
    kind = score_kind(trainable.loss)
    root = prepared_root(params, experiment.dataset)
    threshold = getattr(recipe.thresholds, kind)
    scores, _ = score_named_split(
        trainable, root, "val", recipe.train_on_whole, kind, threshold, recipe, runtime, device
    )
    return selection_score(scores, "max_f1")["max_f1"]


def render_parity(result: dict[str, Any]) -> str:
    """parity.md: one row per experiment, then every validation of both runtimes."""
    import pandas as pd

    optimised_runtime = result["runtimes"]["optimised"]
    switched = [key for key in ("fused_optimizer", "channels_last", "bf16", "compile")]
    on = ", ".join(key for key in switched if optimised_runtime[key]) or (
        "no switch on: on this device the optimised setting computes as the baseline"
    )
    rows = [
        {
            "experiment": row["experiment"],
            "seed": row["seed"],
            "val max F1 baseline": f"{row['baseline']['val_max_f1']:.2f}",
            "val max F1 optimised": f"{row['optimised']['val_max_f1']:.2f}",
            "difference": f"{row['difference']:+.2f}",
            f"within {result['tolerance']}": "yes" if row["within_tolerance"] else "NO",
            "selection": row["selection"],
            "baseline": f"{row['baseline']['selection']:.2f}",
            "optimised": f"{row['optimised']['selection']:.2f}",
            "baseline s": f"{row['baseline']['seconds']:.0f}",
            "optimised s": f"{row['optimised']['seconds']:.0f}",
            **(
                {
                    "next seed, baseline": f"{row['baseline_next_seed']['val_max_f1']:.2f}",
                    "seed difference": f"{row['seed_difference']:+.2f}",
                    "within it": "yes" if row["within_seed_difference"] else "NO",
                }
                if "seed_difference" in row
                else {}
            ),
        }
        for row in result["experiments"]
    ]
    curves = [
        {
            "experiment": row["experiment"],
            "step": base["step"],
            "baseline": f"{base['score']:.2f}",
            "optimised": f"{fast['score']:.2f}",
        }
        for row in result["experiments"]
        for base, fast in zip(
            row["baseline"]["validations"], row["optimised"]["validations"], strict=False
        )
    ]
    lines = [
        f"# Parity of the optimisations on {result['device']} (torch {result['torch']})",
        "",
        "Measured by `cdbench parity`: each experiment's first seed trained twice from scratch,"
        " `baseline` (fp32, NCHW, for-each optimiser, eager) and `optimised` (" + on + "),"
        " with the same data path. `val max F1`: the selected model's F1 on the whole"
        " validation split at the best threshold of a sweep (held to the tolerance);"
        " `selection`: the recipe's selection score of that model (for the demo, F1 at the"
        " fixed threshold on 16 validation pairs), then at every validation. Percent."
        + (
            " `next seed, baseline`: the baseline trained with the next seed, and its"
            " difference from the first seed (what a change of seed does to the same"
            " protocol); `within it`: the optimisations' difference is no larger."
            if any("seed_difference" in row for row in result["experiments"])
            else ""
        ),
        "",
        pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True),
        "",
        "## The selection score at every validation",
        "",
        pd.DataFrame(curves).to_markdown(index=False, disable_numparse=True),
        "",
        "All within tolerance." if result["passed"] else "NOT all within tolerance.",
        "",
    ]
    return "\n".join(lines)
