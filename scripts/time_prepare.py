"""Time `prepare_dataset("levir-cd", ...)` on fixture archives with the published counts.

Writes `train.zip`, `val.zip`, `test.zip` holding 445 / 64 / 128 low-entropy 1024x1024 pairs
(`tests/data/archives.py`) into a temporary folder, prepares them without `--allow-partial`,
and prints the tile counts (must be 7120 / 1024 / 2048) and the seconds taken. Low-entropy
images decode and encode faster than real imagery, so this is a lower bound for the real data.

    python scripts/time_prepare.py [--workers 2] [--layout flat|nested]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmark.data.datasets import DATASETS
from benchmark.data.prepare import DEFAULT_WORKERS, prepare_dataset
from tests.data.archives import LEVIR_FULL, write_levir_archives


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--layout", choices=("flat", "nested"), default="flat")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="time-prepare-") as tmp:
        raw = Path(tmp) / "raw"
        start = time.perf_counter()
        write_levir_archives(raw, LEVIR_FULL, size=1024, layout=args.layout)
        generated = time.perf_counter() - start
        archive_mb = sum(p.stat().st_size for p in raw.iterdir()) / 1e6

        start = time.perf_counter()
        manifest = prepare_dataset("levir-cd", raw, Path(tmp) / "prepared", workers=args.workers)
        seconds = time.perf_counter() - start

    counts = {split: info["pairs"] for split, info in manifest["splits"].items()}
    expected = {split: DATASETS["levir-cd"].tile_pairs(split) for split in counts}
    print(f"fixture archives: {archive_mb:.1f} MB written in {generated:.1f} s")
    print(f"tiles: {counts} (expected {expected})")
    print(f"prepare_dataset('levir-cd', workers={args.workers}): {seconds:.1f} s")
    return 0 if counts == expected else 1


if __name__ == "__main__":
    sys.exit(main())
