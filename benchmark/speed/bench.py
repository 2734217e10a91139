"""`cdbench bench`: measure both models and the data path, project the time of every experiment.

For each model (at 256 x 256, the batch size of its recipe in the suite's experiments): training
and inference throughput and peak memory in the `baseline` and `optimised` settings
(benchmark/speed/measure.py), their ratio, the training FLOPs per pair and, on a GPU with a
known bf16 peak, the fraction of it reached. For each recipe's training loader: pairs per second
against a plain PIL loader of the same files (benchmark/speed/loader.py).

Writes `reports/perf.json` (every number, the device, torch version and settings) and
`reports/perf.md` (the tables and the projection: from the measured throughput and each
recipe's number of samples, the time of every experiment, all its seeds, and of the whole
suite on the device measured). `cdbench bench --reproject` (`reproject`) recomputes only the
projection from the throughputs already in perf.json, after the experiments (e.g. their
seeds) or recipes changed, without measuring again.
"""

from __future__ import annotations

import json
import platform
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from benchmark.config import Params
from benchmark.data.cache import write_caches
from benchmark.data.datasets import DATASETS
from benchmark.errors import ConfigError, DataError
from benchmark.speed import loader as loaders
from benchmark.speed.measure import (
    BASELINE,
    Setting,
    inference_step,
    optimised,
    peak_memory,
    time_windows,
    train_step,
    training_flops_per_pair,
)

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peak of known GPUs (vendor data sheets, SXM parts)."""
BENCH_EXPERIMENT = {"bsfnet": "bsfnet-sisb-cdd", "ifn": "ifn-ds-levir-cd"}
"""The experiment whose recipe (batch size) each model is measured with."""


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def bf16_peak(device: torch.device) -> float | None:
    """The device's dense bf16 peak in TFLOP/s, when known."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_TFLOPS.items() if key in name), None)


def measure_model(
    params: Params,
    model: str,
    device: torch.device,
    settings: list[Setting],
    size: int = 256,
    quick: bool = False,
) -> dict[str, Any]:
    """Every figure of one model (see the module docstring)."""
    name = BENCH_EXPERIMENT[model]
    experiment = params.experiment(name)
    recipe = params.recipes[experiment.recipe]
    counts = (
        {"warmup": 1, "windows": 3, "steps": 1}
        if quick
        else {"warmup": 3, "windows": 3, "steps": 3}
    )
    flops = training_flops_per_pair(experiment, recipe, size)
    peak = bf16_peak(device)
    figures: dict[str, Any] = {
        "model": model,
        "experiment": name,
        "recipe": experiment.recipe,
        "batch_size": recipe.batch_size,
        "size": size,
        "training_gflop_per_pair": flops / 1e9,
        "settings": {},
    }
    trains: dict[str, Callable[[], object]] = {}
    infers: dict[str, Callable[[], object]] = {}
    memory: dict[str, float] = {}
    for setting in settings:
        with peak_memory(device) as used:
            step, trainable = train_step(experiment, recipe, setting, device, size)
            for _ in range(counts["warmup"]):
                step()
        trains[setting.name], memory[setting.name] = step, used[0]
        infers[setting.name] = inference_step(trainable, recipe.batch_size, setting, device, size)
    timing = {"train": trains, "inference": infers}
    measured = {
        kind: time_windows(
            steps,
            recipe.batch_size,
            device,
            counts["warmup"] if kind == "inference" else 0,
            counts["windows"],
            counts["steps"],
        )
        for kind, steps in timing.items()
    }
    for setting in settings:
        train, infer = measured["train"][setting.name], measured["inference"][setting.name]
        figures["settings"][setting.name] = {
            **asdict(setting),
            "train_pairs_per_s": train.pairs_per_s,
            "train_windows": train.windows,
            "inference_pairs_per_s": infer.pairs_per_s,
            "inference_windows": infer.windows,
            "peak_memory_mib": memory[setting.name],
            "fraction_of_bf16_peak": (
                flops * train.pairs_per_s / (peak * 1e12) if peak is not None else None
            ),
        }
        print(
            f"{model} {setting.name}: train {train.pairs_per_s:.2f} pairs/s, "
            f"inference {infer.pairs_per_s:.2f} pairs/s, peak {memory[setting.name]:.0f} MiB",
            flush=True,
        )
    return figures


def measure_loaders(
    params: Params, workers: int, device: torch.device, root: Path | None = None
) -> list[dict[str, Any]]:
    """The training loader of bsfnet-official (tiles) and ifn-opencd (whole images, crops)
    against plain PIL, on the real datasets when prepared, else on a stand-in; and the part
    of the augmentation the training loop does on `device` (ifn-opencd's photometric
    distortion)."""
    results = []
    with tempfile.TemporaryDirectory(prefix="cdbench-bench-") as scratch:
        for model, dataset in (("bsfnet", "cdd"), ("ifn", "levir-cd")):
            experiment = params.experiment(BENCH_EXPERIMENT[model])
            recipe = params.recipes[experiment.recipe]
            data = root or params.data.prepared(dataset)
            stand_in = not (data / "manifest.json").exists()
            if stand_in:
                data = Path(scratch) / dataset
                whole = recipe.train_on_whole
                count = 24 if whole else 160  # more than the CPU caches hold, as real data
                loaders.write_stand_in(data, 1024 if whole else 256, count, whole=whole)
                write_caches(data, progress=False)  # as `cdbench prepare` does
            # the median of several windows: this VM's speed drifts by 10-20 % within seconds
            training = loaders.training_loader(data, recipe, workers, 2 + 5 * 40)
            real_windows = loaders.loader_throughput(training, 40, windows=5)
            plain_windows = loaders.loader_throughput(
                loaders.plain_pil_loader(data, recipe, workers, 2 + 3 * 5), 5, windows=3
            )
            real, plain = statistics.median(real_windows), statistics.median(plain_windows)
            on_device: dict[str, Any] = {"device_augment": None}
            if recipe.augment == "opencd":
                size = recipe.crop or 256
                device_windows = loaders.device_augment_throughput(device, recipe.batch_size, size)
                on_device = {
                    "device_augment": "photometric distortion",
                    "device_augment_pairs_per_s": statistics.median(device_windows),
                    "device_augment_windows": device_windows,
                }
            results.append(
                {
                    "recipe": experiment.recipe,
                    "dataset": dataset,
                    "data": "stand-in (random PNGs)" if stand_in else str(data),
                    "augment": recipe.augment,
                    "train_on_whole": recipe.train_on_whole,
                    "batch_size": recipe.batch_size,
                    "workers": loaders.workers_of(training),
                    "training_loader_pairs_per_s": real,
                    "training_loader_windows": real_windows,
                    "plain_pil_windows": plain_windows,
                    "plain_pil_pairs_per_s": plain,
                    "ratio": real / plain,
                    **on_device,
                }
            )
            print(
                f"loader {experiment.recipe}: {real:.0f} pairs/s (plain PIL {plain:.0f})",
                flush=True,
            )
    return results


def _train_pairs(dataset: str, whole: bool) -> int:
    """Training pairs of an epoch: the whole images with `whole`, else the tiles."""
    if whole:
        return DATASETS[dataset].official_pairs["train"]
    return DATASETS[dataset].tile_pairs("train")


def _eval_tiles(dataset: str, split: str) -> int:
    """Pairs of a split in 256 x 256 tile equivalents (a whole 1024 LEVIR image counts 16)."""
    return DATASETS[dataset].tile_pairs(split)


def projection(
    params: Params,
    models: dict[str, dict[str, Any]],
    device_augment: dict[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Hours of every experiment of a real dataset, all its seeds, from the measured throughput.

    Each row is one experiment: `seeds` runs, each costing the hours below (every run trains
    and evaluates the whole recipe), so its hours are one run's times `seeds`. Training: the
    recipe's samples (iterations x batch, or epochs x pairs // batch x batch) at the training
    throughput, plus, for a recipe in `device_augment` (recipe -> pairs/s of the
    augmentation the loop does on the device), the same samples at that throughput (in both
    settings; also shown alone as `device_augment_hours`). Validation: every `val_every`, the
    validation split (whole LEVIR images count as 16 tiles) at the inference throughput.
    Evaluation: val + test (+ whole test images on LEVIR-CD) once.
    """
    rows = []
    for name, experiment in params.experiments.items():
        if not DATASETS[experiment.dataset].archives or experiment.model not in models:
            continue
        recipe = params.recipes[experiment.recipe]
        per_epoch = _train_pairs(experiment.dataset, recipe.train_on_whole) // recipe.batch_size
        steps = recipe.iterations or recipe.epochs * per_epoch
        interval = recipe.val_every * (per_epoch if recipe.epochs else 1)
        validations = steps // interval + (1 if steps % interval else 0)
        val_pairs = recipe.max_val_pairs or _eval_tiles(experiment.dataset, "val")
        split = recipe.selection_split
        val_tiles = min(val_pairs, _eval_tiles(experiment.dataset, split))
        evaluation = _eval_tiles(experiment.dataset, "val") + _eval_tiles(
            experiment.dataset, "test"
        )
        if DATASETS[experiment.dataset].has_whole:
            evaluation *= 2  # tiles and whole images
        row: dict[str, Any] = {
            "experiment": name,
            "recipe": experiment.recipe,
            "seeds": len(experiment.seeds),
            "steps": steps,
            "train_samples": steps * recipe.batch_size,
        }
        augment_h = 0.0
        if device_augment and experiment.recipe in device_augment:
            augment_h = steps * recipe.batch_size / device_augment[experiment.recipe] / 3600
            row["device_augment_hours"] = augment_h * len(experiment.seeds)
        for setting, figures in models[experiment.model]["settings"].items():
            train_h = augment_h + steps * recipe.batch_size / figures["train_pairs_per_s"] / 3600
            eval_h = (
                (validations * val_tiles + evaluation) / figures["inference_pairs_per_s"] / 3600
            )
            row[f"{setting}_hours"] = (train_h + eval_h) * len(experiment.seeds)
        rows.append(row)
    return rows


def run_bench(
    params: Params,
    models: list[str],
    device: torch.device,
    out: Path,
    workers: int,
    compile: bool | None = None,
    loaders_too: bool = True,
    quick: bool = False,
    size: int = 256,
) -> dict[str, Any]:
    """Measure, project and write `out/perf.json` and `out/perf.md`; return the numbers."""
    unknown = sorted(set(models) - set(BENCH_EXPERIMENT))
    if unknown:
        raise ConfigError(
            f"--model: unknown {unknown}; expected some of {sorted(BENCH_EXPERIMENT)}"
        )
    settings = [BASELINE, optimised(device, compile)]
    loader_figures = measure_loaders(params, workers, device) if loaders_too else []
    measured = {m: measure_model(params, m, device, settings, size, quick) for m in models}
    result: dict[str, Any] = {
        "device": device_description(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "bf16_peak_tflops": bf16_peak(device),
        "quick": quick,
        "size": size,
        "models": measured,
        "loaders": loader_figures,
        "projection": projection(params, measured, _device_augment(loader_figures)),
    }
    _write(result, out)
    return result


def _device_augment(loader_figures: list[dict[str, Any]]) -> dict[str, float]:
    """Recipe -> measured pairs/s of the augmentation its loop does on the device."""
    return {
        row["recipe"]: row["device_augment_pairs_per_s"]
        for row in loader_figures
        if row.get("device_augment")
    }


def _write(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "perf.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "perf.md").write_text(render_perf(result))


def reproject(params: Params, out: Path) -> dict[str, Any]:
    """Recompute the projection of `out/perf.json` for the current params; measure nothing.

    For a change of the experiments or recipes (more seeds, another schedule) that leaves the
    measured throughputs valid, so that the projection follows params.yaml without the 10
    minutes of a new measurement. Rewrites perf.json and perf.md; the result says
    `reprojected: true`, and perf.md says so.

    Raises:
        DataError: `out/perf.json` is missing, unreadable, or lacks the measured figures.
    """
    path = out / "perf.json"
    try:
        result: dict[str, Any] = json.loads(path.read_text())
        models, loader_figures = result["models"], result["loaders"]
    except FileNotFoundError:
        raise DataError(
            f"{path}: not found; --reproject recomputes the projection of an earlier "
            f"measurement: run `cdbench bench --out {out}` first"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(
            f"{path}: not a perf.json written by `cdbench bench` ({error!r}); expected the "
            f"keys 'models' and 'loaders': run `cdbench bench --out {out}` again"
        ) from None
    result["projection"] = projection(params, models, _device_augment(loader_figures))
    result["reprojected"] = True
    _write(result, out)
    return result


def _switches(result: dict[str, Any]) -> str:
    """The optimised setting's switches, in words, as measured."""
    names = {
        "fused": "fused optimiser",
        "channels_last": "channels_last",
        "bf16": "bf16 autocast",
        "compile": "torch.compile",
    }
    for figures in result["models"].values():
        setting = figures["settings"].get("optimised")
        if setting is not None:
            on = [words for key, words in names.items() if setting.get(key)]
            return ", ".join(on) or (
                "no switch on (on this device none of them pays: it computes exactly as the"
                " baseline)"
            )
    return "not measured"


def render_perf(result: dict[str, Any]) -> str:
    """perf.md: models, loaders and the projection, in tables."""
    import pandas as pd

    lines = [
        f"# Speed on {result['device']} (torch {result['torch']})",
        "",
        "Measured by `cdbench bench`" + (" --quick" if result["quick"] else "") + ". Training"
        f" and inference at {result['size']} x {result['size']} with each recipe's batch size,"
        " pairs per second of the"
        " median timed window after warm-up (the settings' windows alternate);"
        " `baseline` = fp32 eager NCHW, for-each optimiser; `optimised` = "
        + _switches(result)
        + ".",
        "",
        "## Models",
        "",
    ]
    rows = []
    for figures in result["models"].values():
        base = figures["settings"].get("baseline")
        for name, entry in figures["settings"].items():
            rows.append(
                {
                    "model": figures["model"],
                    "setting": name,
                    "batch": figures["batch_size"],
                    "train pairs/s": f"{entry['train_pairs_per_s']:.2f}",
                    "vs baseline": f"{entry['train_pairs_per_s'] / base['train_pairs_per_s']:.2f}x"
                    if base
                    else "",
                    "inference pairs/s": f"{entry['inference_pairs_per_s']:.2f}",
                    "peak memory MiB": f"{entry['peak_memory_mib']:.0f}",
                    "train GFLOP/pair": f"{figures['training_gflop_per_pair']:.0f}",
                    "of bf16 peak": f"{100 * entry['fraction_of_bf16_peak']:.1f} %"
                    if entry["fraction_of_bf16_peak"] is not None
                    else "–",
                }
            )
    lines += [pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""]
    if _switches(result).startswith("no switch on"):
        lines += [
            "Here both settings run the same computation: their `vs baseline` ratio is this"
            " machine's noise between alternating windows, not a difference of the settings"
            " (every window is in perf.json).",
            "",
        ]
    if result["loaders"]:
        table = pd.DataFrame(
            [
                {
                    "recipe": row["recipe"],
                    "data": row["data"],
                    "augmentation": row["augment"],
                    "batch": row["batch_size"],
                    "workers": row["workers"],
                    "training loader pairs/s": f"{row['training_loader_pairs_per_s']:.0f}",
                    "plain PIL pairs/s": f"{row['plain_pil_pairs_per_s']:.0f}",
                    "ratio": f"{row['ratio']:.2f}x",
                    "on the training device": (
                        f"{row['device_augment']}: {row['device_augment_pairs_per_s']:,.0f} pairs/s"
                        if row.get("device_augment")
                        else "–"
                    ),
                }
                for row in result["loaders"]
            ]
        )
        lines += [
            "## Data loaders",
            "",
            "Pairs per second delivered by each recipe's training loader (its augmentation"
            " included) after 2 warm-up batches: the median of 5 windows of 40 batches; the"
            " plain PIL loader of the same files: the median of 3 windows of 5 batches (every"
            " window is in perf.json). open-cd's photometric distortion is drawn by the loader"
            " and applied by the training loop to each batch on the training device (here "
            + result["device"]
            + "): its own throughput there, the median of 3 windows of 10 batches, is the last"
            " column.",
            "",
            table.to_markdown(index=False, disable_numparse=True),
            "",
        ]
    if result["projection"]:
        table = pd.DataFrame(result["projection"])
        hours = [c for c in table.columns if c.endswith("_hours")]
        totals = {c: table[c].sum() for c in hours if c != "device_augment_hours"}
        runs = int(table["seeds"].sum())
        seeds = sorted(set(table["seeds"]))
        per_experiment = f"{seeds[0]} each" if len(seeds) == 1 else f"{seeds[0]} to {seeds[-1]}"
        shown = table.assign(
            **{c: table[c].map(lambda h: "–" if pd.isna(h) else f"{h:,.1f}") for c in hours}
        )
        lines += [
            f"## Projection on {result['device']}",
            "",
            f"Hours per experiment, for all its seeds (`seeds`: {per_experiment}, {runs} runs"
            " in all; every run trains and evaluates the whole recipe): training samples at the"
            " measured training throughput, plus validations and the final evaluation at the"
            " inference throughput. Data loading is assumed not to be the bottleneck;"
            " augmentation done on the device (device_augment_hours, when measured) is included"
            " in both settings' hours."
            + (
                f" Measured at {result['size']} x {result['size']}, not the recipes' 256:"
                " these hours are NOT representative."
                if result["size"] != 256
                else ""
            )
            + (
                " Recomputed by `cdbench bench --reproject` from the throughputs measured above,"
                " for the experiments of params.yaml at that time."
                if result.get("reprojected")
                else ""
            ),
            "",
            shown.to_markdown(index=False, disable_numparse=True),
            "",
            f"Whole suite ({len(table)} experiments, {runs} runs): "
            + ", ".join(f"{c.removesuffix('_hours')} {h:,.1f} h" for c, h in totals.items())
            + ".",
            "",
        ]
    return "\n".join(lines)
