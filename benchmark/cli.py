"""The `cdbench` command line: one thin subcommand per DVC stage.

Each subcommand parses its arguments, reads `params.yaml`, and calls one function of one module
(named in its docstring). `params.yaml` is read and checked before anything else is imported
or done. Expected failures (`CdbenchError`) print one message and exit 1; anything
else is a bug and shows its traceback. Heavy modules (torch) are imported inside the commands so
that `cdbench --help` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmark.config import load_params
from benchmark.errors import CdbenchError

REAL_DATASETS = ("cdd", "levir-cd")


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
        config = dataclasses.replace(config, seed=args.seed)
    out = Path(args.out) if args.out else params.data.prepared("synthetic")
    manifest = generate_synthetic(out, config)
    counts = {split: info["pairs"] for split, info in manifest["splits"].items()}
    baseline = manifest["pixel_difference_baseline"]["best_f1"]
    print(
        f"synthetic dataset in {out}: {json.dumps(counts)}; "
        f"best pixel-difference F1 on test = {baseline:.3f}"
    )
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    """`cdbench models` -> `benchmark.models.summary.summarise_models`."""
    from benchmark.models.summary import format_table, summarise_models

    rows = summarise_models(size=args.size)
    print(format_table(rows, size=args.size))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cdbench",
        description="Reproducibility benchmark for change detection (BSFNet, IFN; CDD, LEVIR-CD).",
    )
    parser.add_argument(
        "--params", default="params.yaml", help="parameters file (default: params.yaml)"
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
        help="accept split sizes other than the published ones (recorded in the manifest)",
    )
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser("synth", help="generate the built-in synthetic change-detection dataset")
    p.add_argument("--out", help="output folder (default: data/prepared/synthetic)")
    p.add_argument("--seed", type=int, help="random seed (default: synth.seed in params.yaml)")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("models", help="parameters and GFLOPs of every model")
    p.add_argument("--size", type=int, default=256, help="input side in pixels (default 256)")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except CdbenchError as exc:
        print(f"cdbench {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cdbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
