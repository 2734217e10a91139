"""Size of every model: parameters and multiply-accumulates for one image pair (`cdbench models`).

Each model of `MODELS` is built with its default options and random weights, put in eval mode
(BSFNet's CAM BatchNorm needs it for batch 1) and run on the CPU on one random pair of
size x size images under `torch.utils.flop_counter.FlopCounterMode`.

Counting convention: FlopCounterMode counts a multiply-accumulate as 2 FLOPs and counts only
convolutions (transposed ones included) and matrix products; BatchNorm, activations, pooling,
attention products and interpolation are not counted. So GMACs = GFLOPs / 2, the unit of the
published sizes: 82.35 GMACs and 35.73 M parameters for IFN at 256 x 256 (the model-size columns
of the papers that compare with IFN; BIT, Chen et al., IEEE TGRS 2022, gives 35.71 M), and about
27.3 GMACs for the model of BSFNet's released code (`cd_code`, one 256 x 256 pair).

At 256 x 256 this gives 27.32 GMACs for BSFNet and 78.92 for IFN. IFN's published 82.35 is
reached by the convention of the common counters (thop, ptflops), which charge a
ConvTranspose2d for every output pixel: 4x the true work for IFN's kernel-2 stride-2
upsamplers (4.29 instead of 1.07 GMACs), giving 82.14; the last 0.2 G (0.3 %) would be
element-wise operations such counters add.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from benchmark.models import MODELS, build_model


def summarise_models(size: int = 256) -> list[dict[str, Any]]:
    """Count the parameters and the work of one size x size pair for every model.

    Args:
        size: the side of the square input images in pixels (a multiple of 16).

    Returns:
        One dict per model, in `MODELS` order: `model`, `params_total`, `params_trainable`
        (with the default options), `flops` and `macs` for one pair (both dates), `size`.

    Raises:
        ValueError: `size` does not fit a model (the model's message says what it needs).
    """
    rows = []
    for name in tqdm(MODELS, desc=f"models at {size}x{size}", unit="model", leave=False):
        torch.manual_seed(0)
        model = build_model(name).eval()
        pair = torch.rand(2, 1, 3, size, size)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(pair[0], pair[1])
        flops = counter.get_total_flops()
        rows.append(
            {
                "model": name,
                "params_total": sum(p.numel() for p in model.parameters()),
                "params_trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
                "flops": flops,
                "macs": flops // 2,
                "size": size,
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]], size: int) -> str:
    """Render `summarise_models` rows as an aligned text table with its counting convention.

    Args:
        rows: the output of `summarise_models(size)`.
        size: the input side the rows were measured at.

    Returns:
        The table, a line per model, and a note on what is counted.
    """
    header = ("model", "parameters", "trainable", "GMACs/pair", "GFLOPs/pair")
    lines = [
        (
            row["model"],
            f"{row['params_total']:,}",
            f"{row['params_trainable']:,}",
            f"{row['macs'] / 1e9:.2f}",
            f"{row['flops'] / 1e9:.2f}",
        )
        for row in rows
    ]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(len(header))]

    def render(cells: tuple[str, ...]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    return "\n".join(
        [
            f"Models at {size}x{size}: one pair (both dates), batch 1, CPU, eval mode, "
            "default options",
            render(header),
            *(render(cells) for cells in lines),
            "FLOPs = 2 x MACs (torch.utils.flop_counter); only convolutions and matrix products "
            "are counted.",
            "Trainable < parameters where the encoder is frozen (IFN's default, as open-cd and "
            "CDLab).",
        ]
    )
