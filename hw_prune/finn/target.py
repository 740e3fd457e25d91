"""A FINN build target: FINN's board name, the FPGA part and its resources, the clock."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hw_prune.errors import UserError


@dataclass(frozen=True)
class FinnTarget:
    board: str                 # hw_prune board name (boards/<name>.yaml)
    finn_board: str            # FINN's name for it (Pynq-Z2, ZCU104, KV260_SOM, Ultra96-V2, ...)
    part: str                  # FPGA part
    luts: int
    brams: int                 # 18K blocks, as FINN reports them
    dsps: int
    urams: int
    clock_ns: float

    @property
    def clock_mhz(self) -> float:
        return 1000.0 / self.clock_ns

    def key(self) -> str:
        return f"{self.finn_board}_{self.part}_{self.clock_ns:g}ns"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def finn_target(board: Any, clock_ns: float | None = None) -> FinnTarget:
    """From a board name / BoardSpec (hw_prune.hw.boards) to a FinnTarget; one-line errors for boards
    without a FINN section."""
    from hw_prune.hw.boards import load_board

    spec = load_board(board)
    if spec.finn is None or spec.part is None:
        raise UserError(f"board '{spec.name}' has no FINN section (no FPGA fabric); use a FINN board: "
                        "pynq-z2, zcu104, kv260, ultra96v2")
    clk = float(clock_ns if clock_ns is not None else spec.finn.clock_ns)
    if not 1.0 <= clk <= 100.0:
        raise UserError(f"--clock-ns {clk:g} is out of range; use 1 to 100 ns (10 ns = 100 MHz)")
    f = spec.finn
    return FinnTarget(spec.name, f.board, spec.part.name, f.luts or spec.part.luts, f.brams or spec.part.brams,
                      f.dsps or spec.part.dsps, f.urams or spec.part.urams, clk)
