"""A pruning plan: per-group kept widths + provenance, as a small JSON file (`hw_prune-plan/1`).

Every command that decides widths writes one; `prune --plan` and `transform` apply one. `extra`
carries mode-specific data (e.g. predicted latency from the latency-targeted search).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hw_prune.atomic import read_json, write_json
from hw_prune.errors import UserError

FORMAT = "hw_prune-plan/1"


@dataclass
class Plan:
    model_source: dict[str, Any]
    input_shape: list[int]
    mode: str                                   # ratio | threshold | uniform | plan | latency | ...
    criterion: str = "l2"
    groups: list[dict[str, Any]] = field(default_factory=list)  # {name, width_before, width_after, members}
    flops_before: int = 0
    flops_after: int = 0
    provenance: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT

    def widths(self) -> dict[str, int]:
        return {g["name"]: int(g["width_after"]) for g in self.groups}

    def changed(self) -> dict[str, int]:
        """Only the groups whose width changes."""
        return {g["name"]: int(g["width_after"]) for g in self.groups if g["width_after"] != g["width_before"]}

    @property
    def flops_ratio(self) -> float:
        return self.flops_after / self.flops_before if self.flops_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {"format": d.pop("format"), **d}

    def save(self, path: str | Path) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, d: Any, where: str = "plan") -> "Plan":
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise UserError(f"{where} is not a hw_prune plan (format {FORMAT}); pass a plan JSON written by "
                            "hw_prune prune")
        try:
            groups = [{"name": str(g["name"]), "width_before": int(g["width_before"]),
                       "width_after": int(g["width_after"]), "members": g.get("members", [])} for g in d["groups"]]
            return cls(model_source=dict(d.get("model_source", {})), input_shape=list(d["input_shape"]),
                       mode=str(d.get("mode", "plan")), criterion=str(d.get("criterion", "l2")), groups=groups,
                       flops_before=int(d.get("flops_before", 0)), flops_after=int(d.get("flops_after", 0)),
                       provenance=dict(d.get("provenance", {})), extra=dict(d.get("extra", {})))
        except (KeyError, TypeError, ValueError) as e:
            raise UserError(f"{where} is a damaged plan ({type(e).__name__}: {e}); regenerate it") from None

    @classmethod
    def load(cls, path: str | Path) -> "Plan":
        return cls.from_dict(read_json(path, "plan file"), f"plan file {path}")


def plan_path_for(model_path: str | Path) -> Path:
    """The plan JSON written beside a model file: out.pt -> out.plan.json."""
    p = Path(model_path)
    return p.with_name(p.stem + ".plan.json")
