"""`python -m benchmark` runs the `cdbench` command line."""

from benchmark.cli import main

raise SystemExit(main())
