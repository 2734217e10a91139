"""Every dataset the suite knows, by name: the one registry the command line, params.yaml's
checks, preparation, evaluation, speed and reporting read.

Each module holds one dataset's facts (archives, official split sizes, layout, whole images),
as torchgeo keeps one module per dataset under `torchgeo/datasets/`. Nothing here imports
numpy or an archive reader, so `benchmark.config` can read the names.
"""

from __future__ import annotations

from benchmark.data.datasets.base import Dataset
from benchmark.data.datasets.cdd import CDD
from benchmark.data.datasets.levircd import LEVIR_CD
from benchmark.data.datasets.synthetic import SYNTHETIC

DATASETS: dict[str, Dataset] = {d.name: d for d in (CDD, LEVIR_CD, SYNTHETIC)}
"""name -> dataset, in the order of tables and listings."""

REAL_DATASETS: tuple[str, ...] = tuple(name for name, d in DATASETS.items() if d.archives)
"""The datasets downloaded and prepared from archives (`cdbench download`, `cdbench prepare`)."""

__all__ = ["DATASETS", "REAL_DATASETS", "Dataset"]
