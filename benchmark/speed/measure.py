"""Throughput and memory measurements of `cdbench bench`.

Two settings of every model are measured on the same device in the same process:
- `baseline`: what the reference implementations run — fp32, eager, NCHW tensors, the
  optimiser's default (for-each) implementation;
- `optimised`: on CUDA the fused optimiser, channels_last tensors and weights, bf16 autocast
  and `torch.compile`. On the CPU none of them pays, and each changes the rounding, which the
  demo's 100-step trainings amplify into points of F1 (reports/parity-fused-cpu.md: the fused
  Adam step alone, one unit in the last place apart, moved the validation F1 by 0.7 to 12.7
  points): compiling costs minutes, bf16 is slower, channels_last measured 15-20 % slower for
  IFN and no faster for BSFNet (2 cores, oneDNN; batch 4 at 128 x 128), and the fused Adam
  step is a negligible part of a step. So on the CPU the optimised setting computes exactly as
  the baseline does; what the CPU gains is the data path (benchmark/speed/loader.py), which is
  exact too. `--compile` forces compiling.

Timing: `warmup` steps are run and discarded (allocator, cuDNN autotuning, compilation), then
`windows` rounds in which each setting runs a timed window of `steps` steps, the settings'
order alternating from round to round (a drift of the machine weighs on both alike); the
device is synchronised only at window edges, so no per-step host sync distorts the figure.
Throughput is pairs per second of the median window. Peak memory, from building the model to
the end of its warm-up: `torch.cuda.max_memory_allocated` above the allocation before, on
CUDA; on the CPU, the peak resident set size of this process above its level before, sampled
every 5 ms (memory the allocator already held is not counted: a lower bound).
Training FLOPs per pair are counted with `torch.utils.flop_counter.FlopCounterMode` over one
forward and backward pass (a multiply-accumulate = 2 FLOPs).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.flop_counter import FlopCounterMode

from benchmark.config import ExperimentConfig, RecipeConfig
from benchmark.run import Trainable, untrained
from benchmark.training.recipe import build_optimizer


@dataclass(frozen=True)
class Setting:
    """How a model runs: memory format, precision, optimiser and compilation."""

    name: str
    channels_last: bool = False
    bf16: bool = False
    fused: bool = False
    compile: bool = False


BASELINE = Setting("baseline")


def optimised(device: torch.device, compile: bool | None = None) -> Setting:
    """The optimised setting for `device` (see the module docstring)."""
    cuda = device.type == "cuda"
    return Setting(
        "optimised",
        channels_last=cuda,
        bf16=cuda,
        fused=cuda,
        compile=cuda if compile is None else compile,
    )


@dataclass(frozen=True)
class Timing:
    """Pairs per second of each timed window and of the median one."""

    pairs_per_s: float
    windows: list[float]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_windows(
    steps: dict[str, Callable[[], object]],
    pairs_per_step: int,
    device: torch.device,
    warmup: int,
    windows: int,
    steps_per_window: int,
) -> dict[str, Timing]:
    """Run each of `steps` `warmup` times, then `windows` rounds in which every one runs a
    window of `steps_per_window` calls; pairs/s of each window and the median per name.

    The rounds alternate the order of the settings (A B, then B A, ...), so that a drift of
    the machine (another process, the CPU's clock) weighs on every setting alike."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    synchronize(device)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_ in range(windows):
        for name in names if round_ % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            for _ in range(steps_per_window):
                steps[name]()
            synchronize(device)
            rates[name].append(steps_per_window * pairs_per_step / (time.perf_counter() - start))
    return {name: Timing(statistics.median(r), r) for name, r in rates.items()}


def random_batch(
    batch: int, size: int, device: torch.device, channels_last: bool, seed: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised-looking inputs (t0, t1) and a {0, 1} mask with about 10 % change."""
    generator = torch.Generator().manual_seed(seed)
    t0, t1 = (torch.randn(batch, 3, size, size, generator=generator) for _ in range(2))
    mask = (torch.rand(batch, 1, size, size, generator=generator) < 0.1).to(torch.uint8)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return (
        t0.to(device).contiguous(memory_format=fmt),
        t1.to(device).contiguous(memory_format=fmt),
        mask.to(device),
    )


def prepared_trainable(
    experiment: ExperimentConfig, recipe: RecipeConfig, setting: Setting, device: torch.device
) -> tuple[Trainable, Callable[..., tuple[Tensor, dict[str, Tensor]]]]:
    """The model + loss on `device` in `setting`'s memory format, and the callable to run
    (compiled when the setting says so). Random initialisation: speed does not depend on it."""
    torch.manual_seed(0)
    trainable = untrained(experiment, recipe).to(device)
    if setting.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    forward: Callable[..., tuple[Tensor, dict[str, Tensor]]] = trainable
    if setting.compile:
        forward = torch.compile(trainable)
    return trainable, forward


def train_step(
    experiment: ExperimentConfig,
    recipe: RecipeConfig,
    setting: Setting,
    device: torch.device,
    size: int = 256,
) -> tuple[Callable[[], None], Trainable]:
    """One training step (forward, loss, backward, optimiser step) at the recipe's batch
    size, as a callable; and the model + loss it trains."""
    trainable, forward = prepared_trainable(experiment, recipe, setting, device)
    trainable.train()
    optimizer = build_optimizer(recipe, trainable.parameters(), fused=setting.fused)
    t0, t1, mask = random_batch(recipe.batch_size, size, device, setting.channels_last)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            loss, _ = forward(t0, t1, mask)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, trainable


def inference_step(
    trainable: Trainable, batch: int, setting: Setting, device: torch.device, size: int = 256
) -> Callable[[], None]:
    """One forward pass of `trainable`'s model in eval mode without gradients."""
    model = trainable.model
    run: Callable[..., object] = torch.compile(model) if setting.compile else model
    t0, t1, _ = random_batch(batch, size, device, setting.channels_last)

    @torch.no_grad()
    def step() -> None:
        model.eval()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            run(t0, t1)

    return step


def training_flops_per_pair(
    experiment: ExperimentConfig, recipe: RecipeConfig, size: int = 256
) -> int:
    """FLOPs of one training step (forward + backward) for one pair, on the CPU, fp32."""
    trainable, _ = prepared_trainable(experiment, recipe, BASELINE, torch.device("cpu"))
    trainable.train()
    t0, t1, mask = random_batch(2, size, torch.device("cpu"), False)  # BatchNorm needs > 1
    with FlopCounterMode(display=False) as counter:
        loss, _ = trainable(t0, t1, mask)
        loss.backward()
    flops: int = counter.get_total_flops()
    return flops // 2


@contextmanager
def peak_memory(device: torch.device) -> Iterator[list[float]]:
    """Yield a list that holds, after the block, the peak memory in MiB (see the docstring)."""
    result: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        yield result
        torch.cuda.synchronize(device)
        result.append((torch.cuda.max_memory_allocated(device) - before) / 2**20)
        return
    import psutil

    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            done.wait(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        peak[0] = max(peak[0], process.memory_info().rss)
        result.append((peak[0] - start) / 2**20)
