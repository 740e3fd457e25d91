"""Board specs: one YAML file per board in `boards/`, validated by a pydantic schema.

`load_board("zcu104")` reads boards/zcu104.yaml; `load_board("path/to/my.yaml")` reads a user's own
board. Errors name the file, the field and what is wrong, and never show a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from hw_prune.errors import UserError

BOARDS_DIR = Path(__file__).resolve().parents[2] / "boards"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PartSpec(_Strict):
    """FPGA part and its resources (BRAM counted as 18K blocks, as FINN reports them)."""

    name: str = Field(min_length=3)
    luts: int = Field(gt=0)
    ffs: int = Field(default=0, ge=0)
    brams: int = Field(ge=0)
    dsps: int = Field(ge=0)
    urams: int = Field(default=0, ge=0)

    def __str__(self) -> str:  # so that f"{board.part}" is the part name FINN / Vivado expect
        return self.name


class DPUSpec(_Strict):
    """DPUCZDX8G configuration (PG338): pixel / input-channel / output-channel parallelism."""

    arch: str = Field(pattern=r"^B\d+$")
    pp: int = Field(gt=0)
    icp: int = Field(gt=0)
    ocp: int = Field(gt=0)
    cores: int = Field(gt=0, le=8)
    clock_mhz: float = Field(gt=0, le=1000)

    @model_validator(mode="after")
    def _arch_matches(self) -> "DPUSpec":
        peak = self.pp * self.icp * self.ocp * 2
        if int(self.arch[1:]) != peak:
            raise ValueError(f"arch {self.arch} does not match pp*icp*ocp*2 = {peak}")
        return self


class SSHSpec(_Strict):
    user: str = "root"
    port: int = Field(default=22, gt=0, lt=65536)
    remote_dir: str = "/home/root/hw_prune"
    python: str = "python3"


class FinnSpec(_Strict):
    """What FINN needs: its board name and a default clock. Resources mirror `part` (filled in if absent)."""

    board: str
    clock_ns: float = Field(default=10.0, gt=0)
    luts: int = 0
    brams: int = 0
    dsps: int = 0
    urams: int = 0


class BoardSpec(_Strict):
    name: str = Field(min_length=1)
    kind: Literal["dpu", "finn", "cpu"]
    description: str = ""
    part: Optional[PartSpec] = None
    dpu: Optional[DPUSpec] = None
    ddr_gbps: float = Field(ge=0)
    ddr_efficiency: float = Field(gt=0, le=1)
    frame_overhead_ms: float = Field(ge=0)
    cpu_threads: int = Field(default=4, gt=0)
    ssh: SSHSpec = SSHSpec()
    finn: Optional[FinnSpec] = None
    source: str = ""   # file it was read from (filled in by load_board)

    @model_validator(mode="before")
    @classmethod
    def _finn_resources(cls, data: Any) -> Any:
        # FINN's resource limits default to the part's so that finn code can read board.finn.* alone
        if isinstance(data, dict) and isinstance(data.get("finn"), dict) and isinstance(data.get("part"), dict):
            finn = dict(data["finn"])
            for k in ("luts", "brams", "dsps", "urams"):
                finn.setdefault(k, data["part"].get(k, 0))
            data = {**data, "finn": finn}
        return data

    @model_validator(mode="after")
    def _kind_consistent(self) -> "BoardSpec":
        if self.kind == "dpu":
            if self.dpu is None:
                raise ValueError("kind 'dpu' needs a 'dpu' section (arch, pp, icp, ocp, cores, clock_mhz)")
            if self.ddr_gbps <= 0:
                raise ValueError("kind 'dpu' needs ddr_gbps > 0")
        if self.kind in ("dpu", "finn") and self.part is None:
            raise ValueError(f"kind '{self.kind}' needs a 'part' section (name, luts, brams, dsps)")
        if self.kind == "finn" and self.finn is None:
            raise ValueError("kind 'finn' needs a 'finn' section (board, clock_ns)")
        return self

    @property
    def has_dpu(self) -> bool:
        return self.dpu is not None

    def sim_params(self) -> dict[str, Any]:
        """Plain-dict parameters for hw_prune.hw.sim_dpu.SimDPU (which must not import pydantic)."""
        if self.dpu is None:
            raise UserError(f"board '{self.name}' has no DPU, so the simulated DPU cannot stand in for it; "
                            + ("use --backend local" if self.kind == "cpu" else
                               "use a DPU board (zcu104, zcu102, kv260, ultra96v2) or the FINN flow (build)"))
        return {"board": self.name, "arch": self.dpu.arch, "pp": self.dpu.pp, "icp": self.dpu.icp,
                "ocp": self.dpu.ocp, "cores": self.dpu.cores, "clock_mhz": self.dpu.clock_mhz,
                "ddr_gbps": self.ddr_gbps, "ddr_efficiency": self.ddr_efficiency,
                "frame_overhead_ms": self.frame_overhead_ms, "cpu_threads": self.cpu_threads}


def board_names() -> list[str]:
    """Names of the boards shipped in boards/."""
    return sorted(p.stem for p in BOARDS_DIR.glob("*.yaml"))


def _format_validation(path: Path, err: ValidationError) -> str:
    parts = []
    for e in err.errors()[:3]:
        loc = ".".join(str(x) for x in e.get("loc", ())) or "(top level)"
        msg = e.get("msg", "invalid").removeprefix("Value error, ")
        if e.get("type") == "extra_forbidden":
            msg = "unknown field"
        parts.append(f"field '{loc}': {msg}")
    return f"board file {path}: " + "; ".join(parts) + "; fix the file (see boards/zcu104.yaml for the format)"


def _resolve(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists() or "/" in name_or_path:
        if not p.is_file():
            raise UserError(f"board file {p} does not exist; known boards: {', '.join(board_names())}")
        return p
    cand = BOARDS_DIR / f"{name_or_path}.yaml"
    if not cand.is_file():
        raise UserError(f"unknown board '{name_or_path}'; known boards: {', '.join(board_names())} "
                        "(or pass --board path/to/board.yaml)")
    return cand


def load_board(name_or_path: "str | BoardSpec") -> BoardSpec:
    """A shipped board by name, or a user's board YAML by path."""
    if isinstance(name_or_path, BoardSpec):
        return name_or_path
    path = _resolve(str(name_or_path))
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"board file {path} is not valid YAML{where}: "
                        f"{getattr(e, 'problem', None) or e}; fix the file") from None
    except OSError as e:
        raise UserError(f"cannot read board file {path}: {e.strerror}") from None
    if not isinstance(data, dict):
        raise UserError(f"board file {path}: expected a mapping of fields (name, kind, ...), "
                        f"got {type(data).__name__}; fix the file")
    data.setdefault("name", path.stem)
    try:
        return BoardSpec(**{**data, "source": str(path)})
    except ValidationError as e:
        raise UserError(_format_validation(path, e)) from None
    except TypeError as e:
        raise UserError(f"board file {path}: {e}; fix the file") from None
