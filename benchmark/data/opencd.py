"""open-cd's LEVIR-CD training augmentation: the geometry on the crop window only, with
OpenCV, in the loader; the photometric distortion drawn here, applied on the training device.

The `ifn-opencd` recipe trains on random 256 x 256 crops of the 1024 x 1024 LEVIR-CD images,
after open-cd's pipeline (likyoo/open-cd `configs/common/standard_256x256_40k_levircd.py`, the
transforms in `opencd/datasets/transforms/transforms.py`, mmcv's `imrotate`):

1. `MultiImgRandomRotate(prob=0.5, degree=180)`: with probability 0.5, rotate both dates and
   the label by an angle uniform in [-180, 180] about the image centre ((w - 1) / 2,
   (h - 1) / 2), keeping the image size: `cv2.warpAffine`, bilinear for the dates (border 0),
   nearest for the label (border 255, the ignore index);
2. `MultiImgRandomCrop(256, cat_max_ratio=0.75)`: a random window; up to 10 more are drawn
   while the window holds a single class, or one class covers 75 % or more of its labelled
   (not 255) pixels; the last one is kept unchecked;
3. `MultiImgRandomFlip` horizontal then vertical, each with probability 0.5;
4. `MultiImgPhotoMetricDistortion(brightness_delta=10, contrast_range=(0.8, 1.2),
   saturation_range=(0.8, 1.2), hue_delta=10)`, drawn for each date separately: brightness
   (p 0.5, + uniform(-10, 10)); contrast (p 0.5, x uniform(0.8, 1.2)) first or last (a coin
   per date); saturation (p 0.5, OpenCV's 8-bit HSV, S x uniform(0.8, 1.2)); hue (p 0.5,
   H + an integer in [-10, 10), modulo 180); each step computes in float32 and truncates to
   uint8, and each HSV step converts to HSV and back, as open-cd does. Its numbers are drawn
   here, in open-cd's order, and handed over beside the crop (`colour`, float32 (2, 7)); the
   training loop applies them to the whole batch on its device
   (benchmark/data/photometric.py, which computes OpenCV's 8-bit HSV conversions exactly).
   On the loader's CPU threads these steps took about a third of a pair's time (0.8 of 2.3
   ms on one core): without them, two loader threads deliver 1.3 to 1.8 times as many pairs.

Done naively (rotate the whole 1024 x 1024 pair, then crop) a pair costs about 70 ms on one
core. Here the window is chosen first and each date is warped straight into it, with the
rotation matrix shifted by the window's corner, from the source pixels under the window's
footprint only (the same pixels as rotating and then cropping; tests/test_opencd.py compares
the two), read from the split's memory-mapped cache (`benchmark.data.cache`). The flips are
folded into the read (they commute with the per-pixel colour steps). Every intermediate array
is a work array of the calling thread, reused from pair to pair, and the result is written
into its slot of the batch (`SeededCrops.batch`): a fresh array of a few hundred kB costs more
in page faults than the OpenCV call that fills it (a rotated pair took 4.4 ms with fresh
arrays, 3.0 without, on one core of the 2-core VM, photometric distortion included).

Departures from open-cd, all small:
- the cat_max_ratio check counts the window's pixels whose (rotated) image coordinates are
  multiples of 8 (1,024 of 65,536), each taking the label of the nearest source pixel with
  coordinates multiple of 8, from integral images of that grid made once per pair (instead
  of warping the label window for each of up to 11 tries, every pixel a cache miss); it
  decides as the exact count does except when a class covers within a few percent of 75 %
  of the window (tests/test_opencd.py measures how often the two disagree);
- the label's rotated-in corners (255, ignored by mmseg's loss) become 0 once the window is
  chosen: the suite's losses have no ignore index;
- random numbers come from a `torch.Generator` given per sample (`SeededCrops` in
  benchmark/training/sampler.py seeds it from the run's seed, the epoch and the sample, so the
  data are the same in any thread or process).
Images are RGB where mmcv reads BGR: the HSV conversion is OpenCV's for the matching channel
order, so this changes nothing. The photometric distortion equals open-cd's to the bit with
this machine's OpenCV build (tests/test_photometric.py).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from benchmark.data.photometric import (
    BRIGHTNESS,
    COLOUR_PARAMS,
    CONTRAST_FIRST,
    CONTRAST_LAST,
    HUE,
    HUE_ON,
    IDENTITY,
    SATURATION,
    SATURATION_ON,
    photometric_distortion,
)

cv2.setNumThreads(1)  # one thread per call: the loader's threads or processes are the parallelism

IGNORE = 255
"""mmseg's ignore index: the label value of rotated-in corners during the crop check."""
CHECK_STRIDE = 8
"""The crop check counts every CHECK_STRIDE-th pixel of the window in each direction."""
_MARGIN = 2
"""Source pixels kept around a window's footprint (bilinear reads floor and floor + 1)."""

Sample = dict[str, Any]


class Draws:
    """Uniform numbers from `generator`, fetched 64 at a time (a torch call costs about ten
    microseconds; a pair needs up to about 50 numbers)."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self._buffer: list[float] = []

    def uniform(self, low: float = 0.0, high: float = 1.0) -> float:
        if not self._buffer:
            self._buffer = torch.rand(64, dtype=torch.float64, generator=self.generator).tolist()
        return low + (high - low) * self._buffer.pop()

    def integer(self, low: int, high: int) -> int:
        """Uniform in [low, high), as numpy's and torch's randint."""
        return min(low + int(self.uniform() * (high - low)), high - 1)

    def coin(self) -> bool:
        return self.uniform() < 0.5


def _balanced(changed: int, labelled: int, cat_max_ratio: float) -> bool:
    """mmseg's test: two classes among the labelled pixels, the larger below the ratio."""
    return 0 < changed < labelled and max(changed, labelled - changed) / labelled < cat_max_ratio


@dataclass(frozen=True)
class OpenCDAugment:
    """open-cd's training augmentation of one pair (see the module docstring).

    Args:
        crop: The window's side; None keeps the image size (rotation, flips, colour only).
        cat_max_ratio: The crop check's bound; 1.0 disables the check.
        rotate_prob, degree: Rotation probability and range (+-degree).
        brightness_delta, contrast_range, saturation_range, hue_delta: The photometric
            distortion (open-cd's LEVIR-CD values by default).
    """

    crop: int | None = 256
    cat_max_ratio: float = 0.75
    rotate_prob: float = 0.5
    degree: float = 180.0
    brightness_delta: float = 10.0
    contrast_range: tuple[float, float] = (0.8, 1.2)
    saturation_range: tuple[float, float] = (0.8, 1.2)
    hue_delta: int = 10

    def planes(
        self,
        planes: np.ndarray,
        generator: torch.Generator,
        out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rotate, crop and flip a pair given as uint8 planes (7, H, W) — A's RGB, B's RGB,
        the label in {0, 1} — e.g. a row of the memory-mapped cache (only the window is
        read), and draw its photometric distortion (not applied: see
        `benchmark.data.photometric.photometric_distortion`).

        Args:
            out: (image, mask, colour) arrays to write into, e.g. slots of a batch
                (contiguous uint8 (2, 3, c, c) and (1, c, c), float32 (2, COLOUR_PARAMS));
                new arrays when None.

        Returns:
            (image uint8 (2, 3, c, c), mask uint8 (1, c, c) in {0, 1}, colour float32
            (2, COLOUR_PARAMS)), c the crop side.
        """
        if planes.ndim != 3 or planes.shape[0] != 7 or planes.dtype != np.uint8:
            raise ValueError(
                f"OpenCDAugment: expected uint8 planes (7, H, W), got {planes.dtype} "
                f"{tuple(planes.shape)}"
            )
        height, width = planes.shape[1:]
        size = (self.crop, self.crop) if self.crop is not None else (height, width)
        if height < size[0] or width < size[1]:
            raise ValueError(
                f"OpenCDAugment: image {height} x {width} is smaller than the crop {self.crop}"
            )
        draws = Draws(generator)
        # 1. rotation, drawn as mmseg draws it (both numbers, always)
        rotate = draws.uniform() < self.rotate_prob
        angle = draws.uniform(-self.degree, self.degree)
        # 3. the flips, drawn before the crop (independent draws: the order changes nothing)
        # and applied as the window is read
        flips = (draws.coin(), draws.coin())  # horizontal, vertical
        window = _Window(planes, size, angle if rotate else None, flips)
        # 2. crop: the first window, then up to 10 more while the check fails
        top, left = draws.integer(0, height - size[0] + 1), draws.integer(0, width - size[1] + 1)
        if self.cat_max_ratio < 1:
            for _ in range(10):
                if window.balanced(top, left, self.cat_max_ratio):
                    break
                top = draws.integer(0, height - size[0] + 1)
                left = draws.integer(0, width - size[1] + 1)
        if out is None:
            out = (
                np.empty((2, 3, *size), dtype=np.uint8),
                np.empty((1, *size), dtype=np.uint8),
                np.empty((2, COLOUR_PARAMS), dtype=np.float32),
            )
        image, mask, colour = out
        expected = ((2, 3, *size), (1, *size), (2, COLOUR_PARAMS))
        if (image.shape, mask.shape, colour.shape) != expected:
            raise ValueError(
                f"OpenCDAugment: expected out arrays {expected[0]}, {expected[1]} and "
                f"{expected[2]}, got {image.shape}, {mask.shape} and {colour.shape}"
            )
        window.read(top, left, image, mask)
        # 4. photometric distortion, each date its own draws
        for params in colour:
            self._colour(draws, params)
        return image, mask, colour

    def _colour(self, draws: Draws, params: np.ndarray) -> None:
        """Draw open-cd's photometric distortion of one date into `params`
        (COLOUR_PARAMS,), in open-cd's order of draws (benchmark/data/photometric.py applies
        it); a step not taken keeps its identity value."""
        params[:] = IDENTITY
        if draws.coin():  # brightness
            params[BRIGHTNESS] = draws.uniform(-self.brightness_delta, self.brightness_delta)
        contrast_first = draws.coin()  # open-cd's mode 1: contrast before saturation and hue
        if contrast_first and draws.coin():
            params[CONTRAST_FIRST] = draws.uniform(*self.contrast_range)
        if draws.coin():
            params[SATURATION_ON] = 1.0
            params[SATURATION] = draws.uniform(*self.saturation_range)
        if draws.coin():
            params[HUE_ON] = 1.0
            params[HUE] = draws.integer(-self.hue_delta, self.hue_delta)
        if not contrast_first and draws.coin():
            params[CONTRAST_LAST] = draws.uniform(*self.contrast_range)

    def __call__(self, sample: Sample) -> Sample:
        """The same on a sample dict (image uint8 (2, 3, H, W), mask uint8 (1, H, W)), with
        a generator seeded from torch's global one (as torchvision's transforms draw)."""
        image, mask = sample["image"], sample["mask"]
        height, width = image.shape[-2:]
        planes = torch.cat([image.reshape(6, height, width), mask.reshape(1, height, width)])
        seed = int(torch.randint(0, 2**62, ()))
        image, mask, colour = self.planes(planes.numpy(), torch.Generator().manual_seed(seed))
        image = photometric_distortion(torch.from_numpy(image), torch.from_numpy(colour))
        return {**sample, "image": image, "mask": torch.from_numpy(mask)}


class _Scratch(threading.local):
    """Work arrays of the calling thread, reused from pair to pair: a fresh array of a few
    hundred kB per step costs more in page faults (glibc maps big blocks anew and returns
    them on free) than the OpenCV call that fills it."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """A contiguous uint8 array of `shape` (contents undefined), `name`'s memory."""
        size = math.prod(shape)
        buffer = self.buffers.get(name)
        if buffer is None or buffer.size < size:
            buffer = self.buffers[name] = np.empty(size, dtype=np.uint8)
        return buffer[:size].reshape(shape)


_SCRATCH = _Scratch()


class _Window:
    """Crop windows of `planes` (7, H, W), rotated by `angle` degrees about the image centre
    (mmcv.imrotate) or, when `angle` is None, plain slices; flipped as `flips` says
    (horizontal, vertical) when read."""

    def __init__(
        self,
        planes: np.ndarray,
        size: tuple[int, int],
        angle: float | None,
        flips: tuple[bool, bool] = (False, False),
    ) -> None:
        self.planes, self.size, self.flips = planes, size, flips
        self._counts: tuple[np.ndarray, np.ndarray | None] | None = None
        self.inverse: np.ndarray | None = None
        if angle is not None:
            height, width = planes.shape[1:]
            # mmcv.imrotate: clockwise for a positive angle, about ((w - 1) / 2, (h - 1) / 2)
            centre = ((width - 1) * 0.5, (height - 1) * 0.5)
            self.inverse = cv2.invertAffineTransform(cv2.getRotationMatrix2D(centre, -angle, 1))

    def _warp(
        self,
        source: np.ndarray,
        top: int,
        left: int,
        corner: tuple[int, int] = (0, 0),
        dst: np.ndarray | None = None,
    ) -> np.ndarray:
        """`source` (its pixel (0, 0) at image pixel `corner` (y, x)) warped into the window
        at (top, left), flipped, into `dst` if given; nearest for one channel (the label,
        border 255), bilinear for three (a date, border 0)."""
        assert self.inverse is not None, "_warp reads rotated windows only (see read)"
        # output pixel (x, y) -> window pixel (ox + sx * x, oy + sy * y) -> source pixel
        sx, ox, sy, oy = 1, 0, 1, 0
        if self.flips[0]:
            sx, ox = -1, self.size[1] - 1
        if self.flips[1]:
            sy, oy = -1, self.size[0] - 1
        inverse = self.inverse.copy()
        inverse[:, 2] += inverse[:, :2] @ np.array([left + ox, top + oy], dtype=np.float64)
        inverse[:, 2] -= (corner[1], corner[0])
        inverse[:, 0] *= sx
        inverse[:, 1] *= sy
        label = source.ndim == 2
        return cv2.warpAffine(
            source,
            inverse,
            (self.size[1], self.size[0]),
            dst=dst,
            flags=(cv2.INTER_NEAREST if label else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=IGNORE if label else 0,
        )

    def _footprint(self, top: int, left: int) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1): the source pixels a rotated window reads."""
        assert self.inverse is not None, "_footprint is of rotated windows only (see read)"
        height, width = self.planes.shape[1:]
        (a, b, c), (d, e, f) = self.inverse.tolist()
        bottom, right = top + self.size[0] - 1, left + self.size[1] - 1
        xs = [a * x + b * y + c for x in (left, right) for y in (top, bottom)]
        ys = [d * x + e * y + f for x in (left, right) for y in (top, bottom)]
        return (
            max(int(np.floor(min(ys))) - _MARGIN, 0),
            min(int(np.ceil(max(ys))) + _MARGIN + 1, height),
            max(int(np.floor(min(xs))) - _MARGIN, 0),
            min(int(np.ceil(max(xs))) + _MARGIN + 1, width),
        )

    def balanced(self, top: int, left: int, cat_max_ratio: float) -> bool:
        """The crop check, on the pixels of the window whose (rotated) image coordinates are
        multiples of CHECK_STRIDE: counted from integral images of that grid, made once per
        pair (`_grid`) for all the windows tried."""
        if self._counts is None:
            self._counts = self._grid()
        changed, ignored = self._counts
        i0, j0 = -(-top // CHECK_STRIDE), -(-left // CHECK_STRIDE)
        i1 = (top + self.size[0] - 1) // CHECK_STRIDE + 1
        j1 = (left + self.size[1] - 1) // CHECK_STRIDE + 1

        def total(table: np.ndarray) -> int:
            return int(table[i1, j1] - table[i0, j1] - table[i1, j0] + table[i0, j0])

        cells = (i1 - i0) * (j1 - j0)
        labelled = cells - total(ignored) if ignored is not None else cells
        return _balanced(total(changed), labelled, cat_max_ratio)

    def _grid(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Integral images (cv2.integral) of the changed and of the rotated-in (None when
        not rotated) pixels of the (rotated) label, every CHECK_STRIDE-th pixel."""
        if self.inverse is None:  # labels are 0 or 1: the integral counts changed pixels
            return cv2.integral(self.planes[6, ::CHECK_STRIDE, ::CHECK_STRIDE].copy()), None
        # rotate the label's grid itself (read in order: a rotated read of the memory map
        # would miss the CPU cache at every pixel): grid (x, y) -> rotated image pixel
        # (S x, S y) -> source pixel -> / S, the nearest point of the source's grid
        grid = np.ascontiguousarray(self.planes[6, ::CHECK_STRIDE, ::CHECK_STRIDE])
        inverse = self.inverse / CHECK_STRIDE
        inverse[:, :2] *= CHECK_STRIDE
        grid = cv2.warpAffine(
            grid,
            inverse,
            (grid.shape[1], grid.shape[0]),
            flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=IGNORE,
        )
        changed = cv2.integral((grid == 1).view(np.uint8))
        return changed, cv2.integral((grid == IGNORE).view(np.uint8))

    def read(self, top: int, left: int, image: np.ndarray, mask: np.ndarray) -> None:
        """The window's dates into `image` (2, 3, h, w) and its label into `mask` (1, h, w),
        flipped; rotated-in label pixels are 0."""
        if self.inverse is None:
            rows = slice(top, top + self.size[0])
            if self.flips[1]:  # vertical: the rows in reverse order
                rows = slice(top + self.size[0] - 1, top - 1 if top else None, -1)
            cols = slice(left, left + self.size[1])
            np.copyto(image.reshape(6, *self.size), self.planes[:6, rows, cols])
            np.copyto(mask, self.planes[6:, rows, cols])
            if self.flips[0]:  # horizontal, in place (numpy copies reversed rows bytewise)
                for array in (image, mask):
                    flat = array.reshape(-1, array.shape[-1])
                    cv2.flip(flat, 1, dst=flat)
            return
        # warped straight from the memory map's footprint (views: OpenCV reads the rows it
        # needs), through the thread's work arrays
        y0, y1, x0, x1 = self._footprint(top, left)
        label = self._warp(
            self.planes[6, y0:y1, x0:x1], top, left, (y0, x0), _SCRATCH.get("label", self.size)
        )
        cv2.threshold(label, IGNORE - 1, 0, cv2.THRESH_TOZERO_INV, dst=mask[0])
        footprint = _SCRATCH.get("footprint", (y1 - y0, x1 - x0, 3))
        warped = _SCRATCH.get("warped", (*self.size, 3))
        for date in range(2):
            channels = [self.planes[3 * date + c, y0:y1, x0:x1] for c in range(3)]
            cv2.merge(channels, dst=footprint)
            cv2.split(self._warp(footprint, top, left, (y0, x0), warped), list(image[date]))
