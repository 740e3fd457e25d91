"""FINN (finn-plus) dataflow builds: estimate-only without Vivado, bitfile + driver with it.

`FinnBuilder(qonnx_path, finn_target(board)).build(fps)` / `.search_max_fps()` -> `BuildReport`.
All finn-plus workarounds live in hw_prune.finn.env.
"""

from hw_prune.finn.build import DEFAULT_MAX_UTIL, FinnBuilder, cache_root
from hw_prune.finn.env import finn_session, have_vivado
from hw_prune.finn.report import BuildReport, parse_reports
from hw_prune.finn.target import FinnTarget, finn_target

__all__ = ["FinnBuilder", "BuildReport", "FinnTarget", "finn_target", "parse_reports", "finn_session",
           "have_vivado", "cache_root", "DEFAULT_MAX_UTIL"]
