"""Throughput and memory measurements of `cdbench bench`.

Two settings of every model are measured on the same device in the same process:
- `baseline`: what the reference implementations run — fp32, eager, NCHW tensors, the
  optimiser's default (for-each) implementation;
- `optimised`: channels_last tensors and weights, the fused optimiser, and on CUDA bf16
  autocast and `torch.compile` (on CPU compiling costs minutes and bf16 is slower, so both
  stay off there; `--compile` forces compiling).

Timing: `warmup` steps are run and discarded (allocator, cuDNN autotuning, compilation), then
`windows` timed windows of `steps` steps each; the device is synchronised only at window
edges, so no per-step host sync distorts the figure. Throughput is pairs per second of the
median window. Peak memory: `torch.cuda.max_memory_allocated` on CUDA; on the CPU, the peak
resident set size of this process above its level before the measurement, sampled every 5 ms
(memory the allocator already held before is not counted: a lower bound).
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
from benchmark.training.loop import Trainable, build_trainable
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
        channels_last=True,
        bf16=cuda,
        fused=True,
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
    step: Callable[[], object],
    pairs_per_step: int,
    device: torch.device,
    warmup: int,
    windows: int,
    steps: int,
) -> Timing:
    """Run `step` `warmup` times, then `windows` windows of `steps` calls; pairs/s each."""
    for _ in range(warmup):
        step()
    synchronize(device)
    rates = []
    for _ in range(windows):
        start = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        rates.append(steps * pairs_per_step / (time.perf_counter() - start))
    return Timing(statistics.median(rates), rates)


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
    trainable = build_trainable(experiment, _no_pretrained(recipe)).to(device)
    if setting.channels_last:
        trainable = trainable.to(memory_format=torch.channels_last)
    forward: Callable[..., tuple[Tensor, dict[str, Tensor]]] = trainable
    if setting.compile:
        forward = torch.compile(trainable)  # type: ignore[assignment]
    return trainable, forward


def _no_pretrained(recipe: RecipeConfig) -> RecipeConfig:
    import dataclasses

    return dataclasses.replace(recipe, pretrained=False)


def train_throughput(
    experiment: ExperimentConfig,
    recipe: RecipeConfig,
    setting: Setting,
    device: torch.device,
    size: int = 256,
    warmup: int = 3,
    windows: int = 3,
    steps: int = 3,
) -> Timing:
    """Training steps (forward, loss, backward, optimiser step) at the recipe's batch size."""
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

    return time_windows(step, recipe.batch_size, device, warmup, windows, steps)


def inference_throughput(
    experiment: ExperimentConfig,
    recipe: RecipeConfig,
    setting: Setting,
    device: torch.device,
    size: int = 256,
    warmup: int = 2,
    windows: int = 3,
    steps: int = 3,
) -> Timing:
    """Forward passes in eval mode without gradients, at the recipe's batch size."""
    trainable, _ = prepared_trainable(experiment, recipe, setting, device)
    model = trainable.model.eval()
    run: Callable[..., object] = torch.compile(model) if setting.compile else model
    t0, t1, _ = random_batch(recipe.batch_size, size, device, setting.channels_last)

    @torch.no_grad()
    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=setting.bf16):
            run(t0, t1)

    return time_windows(step, recipe.batch_size, device, warmup, windows, steps)


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
    return counter.get_total_flops() // 2


@contextmanager
def peak_memory(device: torch.device) -> Iterator[list[float]]:
    """Yield a list that holds, after the block, the peak memory in MiB (see the docstring)."""
    result: list[float] = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        yield result
        torch.cuda.synchronize(device)
        result.append(torch.cuda.max_memory_allocated(device) / 2**20)
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
