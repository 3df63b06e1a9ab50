"""The names of the data a run can start from, without importing the readers behind them: the CLI
offers them in `--help` and the config checks `data.source` against them, neither of which should
pull polars in. `tandemrec.data.readers.READERS` maps each format to its reader (a test keeps the two
in step)."""
from __future__ import annotations

# The public formats `tandemrec data import` reads (keys of tandemrec.data.readers.READERS).
IMPORT_FORMATS = ("movielens", "amazon", "hm", "retailrocket", "generic")
# What `data.source` of a run config takes: the synthetic shop, a canonical dataset folder, or a format.
SOURCES = ("synthetic", "dataset", *IMPORT_FORMATS)
