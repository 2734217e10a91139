"""`cdbench predict`: a trained run's change map for a user's own pair of images, of any size.

The model is the run's selected checkpoint (`checkpoints/<run>/best.pt`), or a checkpoint
file given with `--weights FILE` / `--released` (ours, or an author's released one), loaded and
checked by the function `cdbench evaluate` loads it with (benchmark/evaluation/evaluate.py
`load_scoring_model`; a checkpoint trained under another configuration is refused unless
`allow_stale_checkpoint`), and the images are normalised as training normalised them (the
recipe's `normalize`, benchmark/run.py `normalizer`).

Any size: both networks need sides divisible by 32 (IFN's four 2x upsamplings meet VGG16's
taps at H/16; BSFNet's context path reaches H/32 through ResNet-50), so the pair is padded by
reflection to the next multiple of 32 and the padding cropped off the score. An image larger
than `tile` pixels on a side is cut into overlapping windows of `tile` x `tile` and only the
centre of each window is kept (the overlap-tile strategy of Ronneberger et al., "U-Net",
MICCAI 2015): whole-image inference holds every activation of the encoder at full
resolution, so its memory grows with the scene's area (the whole `cdbench predict` process
peaks at about 1.8 GB for BSFNet on a 1000 x 700 pair on the CPU), while the kept centres see
`margin` pixels of context on every side, so the seams hardly show (on a 1000 x 700
synthetic pair, 0.7 % of the pixels' decisions differ between one pass and 512-pixel
windows). The default tile, 1024, is the whole-image size `cdbench evaluate` already scores
LEVIR-CD at (open-cd's protocol), so a pair up to 1024 x 1024 is scored in one pass, as the
whole test images are.

The score is the one evaluation thresholds (benchmark/evaluation/predict.py
`evaluation_score`: a distance in [0, 2] for BSFNet with `sisb`/`contrastive`, a probability
otherwise); a pixel is changed when its score is strictly above the threshold, as everywhere
in the suite. The threshold, in order of preference:
1. the one given (`--threshold`);
2. the `val_threshold` protocol's threshold of the run's metrics file (`cdbench evaluate`:
   F1-maximising on the validation split), when that file scored this very checkpoint (its
   `weights_sha256` is the checkpoint's); for a file given with `--weights`, the metrics file
   of `cdbench evaluate --weights` (`<run>-weights` / `<run>-released`);
3. otherwise the validation split's F1-maximising threshold at the selected step, as the
   training run recorded it (`checkpoints/<run>/summary.json`, `val/max_f1_threshold`);
   for a file given with `--weights`, which has no training record here, the recipe's fixed
   threshold (the `fixed` protocol's: e.g. BSFNet's test script, distance > 1).
The output says which one was used, and which weights (path, provenance, SHA-256).
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from benchmark.config import Params, RunSpec, RuntimeConfig
from benchmark.errors import CdbenchError, DataError
from benchmark.evaluation.evaluate import load_scoring_model
from benchmark.evaluation.predict import SCORE_RANGE, evaluation_score, score_kind
from benchmark.models.released import sha256_of
from benchmark.progress import progress_bar
from benchmark.run import Trainable, normalizer

PAD_MULTIPLE = 32
"""Both networks need input sides divisible by this (see the module docstring)."""
TILE = 1024
"""Default window side: larger images are tiled (a multiple of PAD_MULTIPLE)."""
MARGIN = 64
"""Default context (pixels) cut from each inner side of a window before its centre is kept."""
SCORE_SUFFIXES = (".npy", ".png")
"""How the score map can be written: float32 array, or 8-bit grey scaled over its range."""


@dataclass(frozen=True)
class Threshold:
    """The threshold applied to the score, and where it comes from (for the output)."""

    value: float
    source: str


@dataclass(frozen=True)
class Prediction:
    """What `predict_pair` computed: the float32 score map (H, W), the binary map (H, W) in
    {0, 1}, the threshold, the score's kind and how the pair was cut."""

    score: np.ndarray
    change: np.ndarray
    threshold: Threshold
    kind: str
    windows: int
    padded: tuple[int, int]
    checkpoint: Path
    step: int | None
    """The training step of the weights (None for an author's released file)."""
    provenance: str
    """"trained run", "cdbench checkpoint" or "released checkpoint"."""
    sha256: str
    seconds: float


def read_image(path: Path, role: str) -> np.ndarray:
    """An RGB image file as (H, W, 3) uint8; palette and opaque RGBA images are converted.

    Raises:
        DataError: the file is missing, cannot be decoded, or is not 8-bit colour (the message
            names the file, its mode and the fix).
    """
    if not path.is_file():
        raise DataError(f"image {role} {path}: not found; expected an RGB image file")
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode == "RGBA" and int(np.asarray(image)[..., 3].min()) < 255:
                raise DataError(
                    f"image {role} {path}: RGBA with transparent pixels; expected an RGB image "
                    f"(flatten it onto a background first)"
                )
            if mode not in ("RGB", "RGBA", "P"):
                raise DataError(
                    f"image {role} {path}: mode {mode!r}; expected an 8-bit RGB image (PNG, "
                    f"JPEG or TIFF); convert it, e.g. with PIL's `Image.convert('RGB')`"
                )
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"image {role} {path}: cannot be read as an image ({exc}); expected an RGB PNG, "
            f"JPEG or TIFF file"
        ) from exc


def windows(size: int, tile: int, margin: int) -> list[tuple[int, int, int]]:
    """Along one axis of `size` pixels: (window start, kept start, kept end) for windows of
    `tile` pixels whose kept parts cover 0..size exactly once in order; one window when the
    axis fits. Windows step by tile - 2 * margin; the last one ends at the image's edge."""
    if size <= tile:
        return [(0, 0, size)]
    step = tile - 2 * margin
    starts = [*range(0, size - tile, step), size - tile]
    found = []
    kept_from = 0
    for index, start in enumerate(starts):
        last = index == len(starts) - 1
        kept_to = size if last else start + tile - margin
        found.append((start, kept_from, kept_to))
        kept_from = kept_to
    return found


def check_tiling(tile: int, margin: int) -> None:
    """Raise CdbenchError unless `tile` is a positive multiple of PAD_MULTIPLE and the margins
    leave part of each window to keep."""
    if tile <= 0 or tile % PAD_MULTIPLE:
        raise CdbenchError(f"--tile {tile}: expected a positive multiple of {PAD_MULTIPLE}")
    if margin < 0 or 2 * margin >= tile:
        raise CdbenchError(
            f"--margin {margin}: expected 0 <= margin < tile / 2 (tile {tile}), so that each "
            f"window keeps a centre"
        )


def padded_side(side: int) -> int:
    """`side` rounded up to the next multiple of PAD_MULTIPLE."""
    return -(-side // PAD_MULTIPLE) * PAD_MULTIPLE


@torch.no_grad()
def score_window(
    trainable: Trainable, pair: Tensor, device: torch.device, runtime: RuntimeConfig
) -> Tensor:
    """The (H, W) float32 score of one normalised pair (2, 3, H, W), reflect-padded to
    multiples of PAD_MULTIPLE for the forward pass and cropped back."""
    height, width = pair.shape[-2:]
    pad_h, pad_w = padded_side(height) - height, padded_side(width) - width
    batch = pair.to(device)
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        batch = torch.nn.functional.pad(batch, (0, pad_w, 0, pad_h), mode=mode)
    t0, t1 = batch[0:1], batch[1:2]
    if runtime.channels_last:
        t0 = t0.contiguous(memory_format=torch.channels_last)
        t1 = t1.contiguous(memory_format=torch.channels_last)
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=runtime.bf16):
        output = trainable.model(t0, t1)
    score = evaluation_score(output, trainable.loss)
    return score[0, 0, :height, :width].float().cpu()


def choose_threshold(
    run: str,
    checkpoint_path: Path,
    summary: dict[str, Any],
    reports: Path,
    given: float | None = None,
    fixed: float | None = None,
) -> Threshold:
    """The threshold to apply and its source (see the module docstring for the order).

    `run` names the metrics file (`reports/metrics/<run>.json`); `summary` is the training
    run's summary.json ({} for a --weights file); `fixed` is the recipe's fixed threshold,
    the last resort for a --weights file (None for a trained run, which has its own).

    Raises:
        CdbenchError: no threshold is given and neither the metrics file nor summary.json
            holds one (the message names both and `cdbench evaluate`).
    """
    if given is not None:
        return Threshold(given, "given (--threshold)")
    metrics_path = reports / "metrics" / f"{run}.json"
    why = "is absent"
    if metrics_path.is_file():
        from benchmark.reporting.results import verified_metrics

        try:
            metrics = verified_metrics(metrics_path)
        except DataError as exc:
            metrics, why = {}, f"is not usable ({exc})"
        if metrics.get("weights_sha256") == sha256_of(checkpoint_path):
            return Threshold(
                float(metrics["val_threshold/threshold"]),
                f"the validation-chosen threshold of `cdbench evaluate` ({metrics_path})",
            )
        if metrics:
            why = "scored another checkpoint"
    best_step = summary.get("best_step")
    for record in summary.get("history", []):
        if record.get("step") == best_step and "val/max_f1_threshold" in record:
            return Threshold(
                float(record["val/max_f1_threshold"]),
                f"the validation split's F1-maximising threshold at the selected step "
                f"{best_step}, from training ({checkpoint_path.parent / 'summary.json'}; "
                f"{metrics_path} {why})",
            )
    if fixed is not None:
        return Threshold(
            fixed,
            f"the recipe's fixed threshold (the `fixed` protocol; {metrics_path} {why}: "
            f"`cdbench evaluate --weights` chooses one on the validation split)",
        )
    raise CdbenchError(
        f"no threshold for {run}: {metrics_path} {why}, "
        f"and {checkpoint_path.parent / 'summary.json'} records none at step {best_step}; run "
        f"`dvc repro evaluate@{run}` or pass --threshold"
    )


def predict_pair(
    params: Params,
    spec: RunSpec,
    image_a: Path,
    image_b: Path,
    checkpoint_dir: Path,
    reports: Path,
    runtime: RuntimeConfig,
    threshold: float | None = None,
    tile: int = TILE,
    margin: int = MARGIN,
    allow_stale_checkpoint: bool = False,
    weights: Path | None = None,
) -> Prediction:
    """Score the pair (`image_a` at the first date, `image_b` at the second) with the run's
    selected model, or with the checkpoint file `weights` (`--weights` / `--released`; the
    run's folder is then not read), and threshold the score (see the module docstring).

    Raises:
        DataError: an image is missing or unreadable, or the two differ in size.
        CdbenchError: no usable checkpoint or threshold (see
            benchmark/evaluation/evaluate.py `load_scoring_model`, `choose_threshold`), or a
            tile that is not a positive multiple of 32.
    """
    check_tiling(tile, margin)
    first, second = read_image(image_a, "A"), read_image(image_b, "B")
    if first.shape != second.shape:
        raise DataError(
            f"image A {image_a} is {first.shape[1]} x {first.shape[0]} pixels but image B "
            f"{image_b} is {second.shape[1]} x {second.shape[0]}; the two dates must be "
            f"co-registered images of the same size (crop or resample one to the other)"
        )
    started = time.perf_counter()
    model = load_scoring_model(
        params, spec, checkpoint_dir, runtime, allow_stale_checkpoint, weights
    )
    trainable, device = model.trainable, model.device
    experiment = params.experiment(spec.experiment)
    recipe = params.recipes[experiment.recipe]
    fixed = getattr(recipe.thresholds, score_kind(trainable.loss)) if weights is not None else None
    chosen = choose_threshold(model.run, model.checkpoint, model.summary, reports, threshold, fixed)
    normalise = normalizer(recipe)
    pair = torch.from_numpy(np.stack([first, second])).permute(0, 3, 1, 2)
    height, width = first.shape[:2]
    score = np.zeros((height, width), np.float32)
    rows, columns = windows(height, tile, margin), windows(width, tile, margin)
    cuts = progress_bar(
        itertools.product(rows, columns),
        desc=f"predict {spec.name}",
        total=len(rows) * len(columns),
        unit="window",
        enabled=runtime.progress and len(rows) * len(columns) > 1,
    )
    for (top, keep_top, keep_bottom), (left, keep_left, keep_right) in cuts:
        window = pair[..., top : top + tile, left : left + tile]
        window_score = score_window(trainable, normalise.images(window), device, runtime)
        score[keep_top:keep_bottom, keep_left:keep_right] = window_score[
            keep_top - top : keep_bottom - top, keep_left - left : keep_right - left
        ].numpy()
    side = min(tile, height), min(tile, width)
    return Prediction(
        score=score,
        change=(score > chosen.value).astype(np.uint8),
        threshold=chosen,
        kind=score_kind(trainable.loss),
        windows=len(rows) * len(columns),
        padded=(padded_side(side[0]), padded_side(side[1])),
        checkpoint=model.checkpoint,
        step=model.step,
        provenance=model.identity["weights_provenance"],
        sha256=model.identity["weights_sha256"],
        seconds=time.perf_counter() - started,
    )


def write_outputs(prediction: Prediction, change_path: Path, score_path: Path) -> None:
    """The change map as a PNG of 0 (unchanged) and 255 (changed), the labels' convention;
    the score as float32 `.npy`, or as an 8-bit grey `.png` scaled linearly over the score's
    range (distance 0..2, probability 0..1).

    Raises:
        CdbenchError: a path with another suffix.
    """
    if change_path.suffix.lower() != ".png":
        raise CdbenchError(f"--out {change_path}: expected a .png file")
    if score_path.suffix.lower() not in SCORE_SUFFIXES:
        raise CdbenchError(f"--out-score {score_path}: expected one of {', '.join(SCORE_SUFFIXES)}")
    for path in (change_path, score_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(prediction.change * 255).save(change_path)
    if score_path.suffix.lower() == ".npy":
        np.save(score_path, prediction.score)
    else:
        low, high = SCORE_RANGE[prediction.kind]
        scaled = np.clip((prediction.score - low) / (high - low), 0.0, 1.0)
        Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(score_path)


def default_score_path(change_path: Path) -> Path:
    """`<change stem>-score.npy` beside the change map."""
    return change_path.with_name(change_path.stem + "-score.npy")
