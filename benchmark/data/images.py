"""Reading the raw dataset images, binarising labels and cutting tiles.

Every check names the image by `source`, the place the user can find it (`train.zip:
A/train_1.png`), not by the temporary path it was extracted to.

Conventions (those of the codebases whose recipes are reproduced):
- Labels: a pixel value >= 128 means change (open-cd; CDLab's `> 127` is the same). CDD labels
  are JPEG and so not exactly 0/255; `== 255` (ChangeFormer, BSFNet's code) leaves holes. A
  lossless label holding only 0 and 1 (a 0/1-encoded copy) is refused rather than binarised to
  no change everywhere.
- LEVIR-CD tiles: 256x256, non-overlapping, named `{stem}_{row:04d}_{col:04d}` where row and col
  are the PIXEL offsets of the tile's top-left corner (0000, 0256, 0512, 0768), as in the
  LEVIR-CD-256 copy distributed by BIT_CD / ChangeFormer (checked against the file names of
  wgcban/ChangeFormer `samples_LEVIR/`, e.g. `test_77_0512_0256.png`, `train_412_0512_0768.png`).
  That the first number is the row (y) and the second the column (x) is the natural reading of
  the `{row}_{col}` convention; the sample names alone cannot prove the order.

Deliberate departure: a label with several channels is accepted when its channels agree
after binarising (not only when they are exactly equal), so the sub-level chroma noise a JPEG
encoder may leave on a grey label does not reject a valid dataset; a label whose channels
disagree about change (e.g. a colour-coded label) is refused.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from benchmark.errors import DataError

CHANGE_THRESHOLD = 128
"""A label value >= this is change."""


def _open(path: Path, source: str, fix: str) -> Image.Image:
    """Open and decode an image; on failure, close it (no open file left behind)."""
    image = None
    try:
        image = Image.open(path)
        image.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        if image is not None:
            image.close()
        raise DataError(
            f"{source}: cannot be decoded as an image ({exc}); the archive is probably "
            f"corrupt: {fix}"
        ) from exc
    return image


def read_rgb(path: Path, source: str, fix: str) -> np.ndarray:
    """Read an RGB image as an (H, W, 3) uint8 array.

    RGB is taken as is, a palette image is expanded, and RGBA is accepted only when its alpha
    channel is fully opaque (the alpha is then dropped).

    Args:
        path: the file on disk.
        source: how the file is named in messages (archive and member name).
        fix: what to tell the user to do when the file cannot be decoded.

    Raises:
        DataError: the file cannot be decoded, or is not an RGB image.
    """
    with _open(path, source, fix) as image:
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode == "RGBA":
            array = np.asarray(image)
            if (array[..., 3] != 255).any():
                raise DataError(
                    f"{source}: RGBA image with transparent pixels; expected an RGB image"
                )
            return np.ascontiguousarray(array[..., :3])
        if image.mode != "RGB":
            raise DataError(f"{source}: image mode {image.mode!r}; expected an RGB image")
        return np.asarray(image)


def binarise(values: np.ndarray) -> np.ndarray:
    """Map label values to change (True) where value >= `CHANGE_THRESHOLD`."""
    return values >= CHANGE_THRESHOLD


def read_label(path: Path, source: str, fix: str) -> np.ndarray:
    """Read a change label as an (H, W) boolean array (value >= 128 is change).

    A single-channel (or 1-bit) label is binarised directly. A label with several channels
    (RGB, palette) is accepted when every channel gives the same binary map, and refused
    otherwise. A lossless label (not JPEG) holding only the values 0 and 1 is refused: it is
    a 0/1-encoded copy, and binarising it at 128 would silently mark every pixel unchanged.

    Raises:
        DataError: the file cannot be decoded, has an unsupported mode, is a 0/1 label, or its
            channels disagree.
    """
    with _open(path, source, fix) as image:
        lossless = image.format != "JPEG"
        if image.mode in ("1", "L"):
            values = np.asarray(image.convert("L"))
        else:
            if image.mode == "P":
                image = image.convert("RGB")
            if image.mode != "RGB":
                raise DataError(
                    f"{source}: label mode {image.mode!r}; expected a single-channel (L) label, "
                    f"or RGB with equal channels"
                )
            values = np.asarray(image)
    if lossless and values.max(initial=0) == 1:
        raise DataError(
            f"{source}: label values are 0 and 1; expected 0 (no change) and 255 (change), "
            f"a value >= {CHANGE_THRESHOLD} being change, so every pixel would count as "
            f"unchanged: this is not the dataset's official archive; {fix}"
        )
    if values.ndim == 2:
        return binarise(values)
    channels = binarise(values)
    first = channels[..., 0]
    disagree = (channels != first[..., None]).any(axis=-1)
    if disagree.any():
        row, col = (int(v) for v in np.argwhere(disagree)[0])
        example = tuple(int(v) for v in values[row, col])
        raise DataError(
            f"{source}: label has 3 channels with differing values at {int(disagree.sum())} "
            f"pixel(s) (e.g. row {row}, column {col}: {example}); expected a single-channel "
            f"label, or channels that are equal"
        )
    return first


def check_same_size(
    a: np.ndarray, b: np.ndarray, label: np.ndarray, sources: tuple[str, str, str]
) -> None:
    """Refuse a pair whose A, B and label sizes differ.

    Raises:
        DataError: naming the B or label file and both sizes (width x height).
    """
    size_a = (a.shape[1], a.shape[0])
    for array, source in ((b, sources[1]), (label, sources[2])):
        size = (array.shape[1], array.shape[0])
        if size != size_a:
            raise DataError(
                f"{source}: is {size[0]}x{size[1]} but the pair's A image is "
                f"{size_a[0]}x{size_a[1]}; A, B and label of a pair must have the same size"
            )


def tile_offsets(height: int, width: int, tile: int) -> list[tuple[int, int]]:
    """Top-left (row, col) pixel offsets of the non-overlapping `tile` x `tile` tiles, row-major."""
    return [(row, col) for row in range(0, height, tile) for col in range(0, width, tile)]


def tile_name(stem: str, row: int, col: int) -> str:
    """BIT / ChangeFormer tile name: `train_1`, 256, 512 -> `train_1_0256_0512`."""
    return f"{stem}_{row:04d}_{col:04d}"
