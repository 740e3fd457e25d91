"""An analytical FINN folding + resource model: what a FINN dataflow design of given layer widths needs
at a fixed throughput target, in milliseconds instead of an estimate build.

Why resources: a FINN design runs at the speed of its slowest layer, and FINN's SetFolding gives every
layer the least parallelism (PE | cout, SIMD | cin*k*k) that gets its cycles per frame <= T = f_clk / F.
At a fixed target F the cost of a set of widths is therefore the LUT / BRAM_18K / DSP the folded layers
need, and that is additive over layers. The budget unit of this cost model is UTILIZATION (a fraction of
the part), not milliseconds: `predict_model(specs).latency_ms` is the utilization of the most used
resource, `per_layer_ms` each layer's cost (the largest of its three utilization fractions), and a
width search run with `budget=max_util` returns widths whose design fits at F.

The per-node formulas are finn-plus 1.6.1's own (`lut_estimation` / `bram_estimation` /
`dsp_estimation` of MVAU_hls, MVAU_rtl, ConvolutionInputGenerator_rtl; `get_exp_cycles` of MVAU,
ConvolutionInputGenerator_rtl, FMPadding, Pool, GlobalAccPool), with the folding order of SetFolding
(MVAU: SIMD over divisors of MW first, then PE over divisors of MH; sliding windows: SIMD over divisors
of the channels; pools: PE, shared with their sliding window). What is not modelled exactly (the
accumulator width FINN derives from the actual weights, thresholding memories) is absorbed by
per-category scale factors fitted to real estimate builds (`calibrate`). Every number is a model of
FINN's ESTIMATES, which are themselves estimates, not measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

from hw_prune.hw.interfaces import ModelPrediction
from hw_prune.layers import LayerSpec

NAME = "finn-estimate"
MAC_OPS = ("conv", "dwconv", "fc")
# keys of the per-category scale factors (what calibrate() fits against FINN's per-layer reports)
CATEGORIES = ("mvau_lut", "mvau_bram", "dsp", "swg_lut", "thr_lut")
MVAU_WWIDTH_MAX = 4096        # hw_prune.finn.build raises FINN's per-PE weight width cap to this
MAX_AP_INT_W = 8191           # finn.util.basic.MAX_ALLOWED_AP_INT_W: SetFolding stops PE there (HLS MVAU)
# thresholding memories (finn-plus sizes them with its memory-primitive search; a fit to its estimates
# for cnv-small and a pruned copy): input image thresholds (3 channels, 8-bit) 512 LUT at PE 1, 864 at PE 3;
# the thresholds after the global pool (4-bit) ~150 LUT at 64 channels, ~80 at 32
THR_IN = (336.0, 176.0)       # LUT = a + b * PE
THR_ACT = (10.0, 2.2)         # LUT = a + b * channels


@lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    n = max(1, int(n))
    return tuple(x for x in range(1, n + 1) if n % x == 0)


@dataclass
class NodeCost:
    """One FINN node (or a layer's group of nodes): its folding and estimated resources."""

    cycles: int
    lut: float = 0.0
    bram: float = 0.0
    dsp: float = 0.0
    pe: int = 1
    simd: int = 1
    met: bool = True           # cycles <= T was reachable

    def add(self, o: "NodeCost") -> "NodeCost":
        return NodeCost(max(self.cycles, o.cycles), self.lut + o.lut, self.bram + o.bram, self.dsp + o.dsp,
                        self.pe, self.simd, self.met and o.met)


@dataclass
class LayerCost:
    """What one LayerSpec costs at T, per scaled resource category."""

    cycles: int
    res: dict[str, float] = field(default_factory=dict)   # category -> amount (before scales)
    met: bool = True
    pe: int = 1
    simd: int = 1


# ------------------------------------------------------------------------------------------------
# finn-plus formulas


def _mvau_bram(pe: int, simd: int, w: int, mw: int, mh: int) -> int:
    """MVAU.bram_estimation (internal_decoupled, ram_style auto)."""
    omega = (mw * mh) / (simd * pe)
    width = simd * w * pe
    if width == 1:
        return math.ceil(omega / 16384)
    if width == 2:
        return math.ceil(omega / 8192)
    if width <= 4:
        return math.ceil(omega / 4096) * math.ceil(width / 4)
    if width <= 9:
        return math.ceil(omega / 2048) * math.ceil(width / 9)
    if width <= 18 or omega > 512:
        return math.ceil(omega / 1024) * math.ceil(width / 18)
    return math.ceil(omega / 512) * math.ceil(width / 36)


def _acc_bits(mw: int, w: int, a: int) -> float:
    """The accumulator bound FINN uses when the datatype is not minimised (arXiv 2301.13376); FINN's
    minimised accumulator is usually ~2 bits narrower (absorbed by the mvau_lut scale)."""
    alpha = math.log2(max(1, mw)) + w + a - 1
    return float(min(32, math.ceil(alpha + math.log2(1 + 2 ** -alpha) + 1)))


def _mvau_hls_lut(pe: int, simd: int, w: int, a: int, mw: int) -> float:
    """MVAU_hls.lut_estimation with resType lut, thresholds not in LUTs."""
    mult = simd * (2 * math.ceil((w + a) / 6) - 1) * (w + a)
    adder = (w + a) * (2 * simd - 1)
    return 300 + 1.1 * pe * (mult + adder + _acc_bits(mw, w, a))


def _fold_mvau(mw: int, mh: int, vecs: int, T: int, w: int) -> tuple[int, int, int, bool]:
    """SetFolding for MVAU_hls/rtl: SIMD up over divisors of MW (weight width per PE <= MVAU_WWIDTH_MAX),
    then PE up over divisors of MH (weight stream <= MAX_AP_INT_W). Returns (PE, SIMD, cycles, met)."""
    simd = 1
    for s in divisors(mw):
        if w * s > MVAU_WWIDTH_MAX:
            break
        simd = s
        if mh * (mw // s) * vecs <= T:
            break
    pe = 1
    cyc = mh * (mw // simd) * vecs
    if cyc > T:
        for p in divisors(mh):
            if p * simd * w > MAX_AP_INT_W:
                break
            pe = p
            cyc = (mh // p) * (mw // simd) * vecs
            if cyc <= T:
                break
    return pe, simd, cyc, cyc <= T


def _swg(cin: int, h: int, w: int, k: int, stride: int, pad: int, bits: int, T: int,
         depthwise: bool = False, simd: int | None = None) -> NodeCost:
    """ConvolutionInputGenerator_rtl (default impl style, distributed buffer) at the least SIMD meeting T
    (or at `simd`, when a depthwise window shares its consumer's PE)."""
    ih, iw = h + 2 * pad, w + 2 * pad
    oh, ow = (ih - k) // stride + 1, (iw - k) // stride + 1

    def cost(s: int) -> tuple[int, float]:
        cf = cin // s
        bmin = ((k - 1) * iw + (k - 1) + 1) * cf
        wr, rd = ow * k * k * cf, stride * iw * cf
        mx = max(wr, rd) + (ow * (stride - 1) * (cf - 1) if depthwise else 0)
        cyc = bmin + oh * mx + ((stride - 1) * iw * cf if depthwise else 0)
        depth = bmin + max(0, ((stride - 1) - k * k) * cf) + max(0, ((stride - 1) * iw - k * k) * cf)
        if not depthwise:
            depth = bmin + 1
        return int(cyc), 300.0 + bits * s * math.ceil(depth / 38)

    if simd is not None:
        cyc, lut = cost(simd)
        return NodeCost(cyc, lut, simd=simd, met=cyc <= T)
    for s in divisors(cin):
        cyc, lut = cost(s)
        if cyc <= T:
            return NodeCost(cyc, lut, simd=s)
    # FINN switches to the parallel window mode here: one input value per cycle
    cyc = ih * iw + 2
    return NodeCost(cyc, lut, simd=cin, met=cyc <= T)


# ------------------------------------------------------------------------------------------------


@dataclass
class FinnTotals:
    """Model totals of one design at one T."""

    T: int
    cycles: int                # slowest node
    luts: float
    brams: float
    dsps: float
    met: bool
    util: dict[str, float]
    per_layer: list[float]     # per LayerSpec: max of its utilization fractions

    @property
    def max_util(self) -> float:
        return max(self.util.values())


class FinnFoldingCost:
    """CostModel for FINN at a fixed throughput target (see module docstring). Budget unit: utilization.

    board: hw_prune board name / spec with a FINN section; target_fps: the throughput target F.
    scales: per-category factors {mvau_lut, mvau_bram, dsp, swg_lut, thr_lut} (1.0 = finn-plus' formulas).
    """

    backend = NAME
    # FINN folds a layer by divisors of its channel counts: multiples of 8 keep parallelism 1, 2, 4, 8, ...
    # available, a prime width only 1 or itself (see README, "FINN as a pruning target")
    alignment = 8

    def __init__(self, board: Any, weight_bits: int = 4, act_bits: int = 4, max_util: float | None = None,
                 clock_ns: float | None = None, target_fps: float | None = None, input_bits: int = 8,
                 scales: Mapping[str, float] | None = None, first_layer: str | None = None,
                 last_fc: str | None = None) -> None:
        from hw_prune.finn import DEFAULT_MAX_UTIL, finn_target

        self.target = finn_target(board, clock_ns)
        self.board = self.target.board
        self.weight_bits, self.act_bits, self.input_bits = int(weight_bits), int(act_bits), int(input_bits)
        self.max_util = float(max_util if max_util is not None else DEFAULT_MAX_UTIL)
        self.clock_hz = 1e9 / self.target.clock_ns
        self.target_fps = float(target_fps) if target_fps else None
        self.scales = {c: 1.0 for c in CATEGORIES}
        self.scales.update({k: float(v) for k, v in (scales or {}).items() if k in self.scales})
        self.first_layer, self.last_fc = first_layer, last_fc
        self._memo: dict[tuple, LayerCost] = {}

    # -- set-up ------------------------------------------------------------------------------------
    @property
    def T(self) -> int:
        """FINN's cycles-per-frame target: int(f_clk / F) (DataflowBuildConfig._resolve_cycles_per_frame)."""
        if not self.target_fps:
            raise ValueError("FinnFoldingCost needs target_fps for per-layer costs")
        return max(1, int(self.clock_hz / self.target_fps))

    def bind(self, specs: Sequence[LayerSpec]) -> "FinnFoldingCost":
        """Name the first MAC layer (its input is the 8-bit image) and the last FC (no activation: FINN maps
        it to the DSP-based MVAU_rtl) from the model's specs; widths change, names do not."""
        macs = [s for s in specs if s.op in MAC_OPS]
        if macs:
            self.first_layer = macs[0].name
            if macs[-1].op == "fc":
                self.last_fc = macs[-1].name
        self._memo.clear()
        return self

    def with_target(self, target_fps: float) -> "FinnFoldingCost":
        c = FinnFoldingCost(self.board, self.weight_bits, self.act_bits, self.max_util, self.target.clock_ns,
                            target_fps, self.input_bits, self.scales, self.first_layer, self.last_fc)
        return c

    def with_scales(self, scales: Mapping[str, float]) -> "FinnFoldingCost":
        c = self.with_target(self.target_fps or 1.0)
        c.target_fps = self.target_fps
        c.scales.update(scales)
        return c

    def _is_first(self, s: LayerSpec) -> bool:
        return s.name == self.first_layer if self.first_layer else s.cin <= 4

    def _is_last_fc(self, s: LayerSpec) -> bool:
        return s.op == "fc" and (s.name == self.last_fc if self.last_fc else True)

    # -- one layer ---------------------------------------------------------------------------------
    def layer_cost(self, s: LayerSpec, T: int) -> LayerCost:
        key = (s.key(), self._is_first(s), self._is_last_fc(s), T)
        v = self._memo.get(key)
        if v is None:
            v = self._layer_cost(s, T)
            if len(self._memo) > 200_000:
                self._memo.clear()
            self._memo[key] = v
        return v

    def _layer_cost(self, s: LayerSpec, T: int) -> LayerCost:
        W, A = self.weight_bits, self.act_bits
        a_in = self.input_bits if self._is_first(s) else A
        res = {c: 0.0 for c in CATEGORIES}
        if s.op in ("conv", "fc"):
            k = max(1, s.kernel) if s.op == "conv" else 1
            cin_g = s.cin // max(1, s.groups)
            mw, mh = k * k * cin_g, s.cout
            vecs = s.h_out * s.w_out if s.op == "conv" else 1
            pe, simd, cyc, met = _fold_mvau(mw, mh, vecs, T, W)
            res["mvau_bram"] = _mvau_bram(pe, simd, W, mw, mh)
            if self._is_last_fc(s):   # no activation: MVAU_rtl, multiplications on DSPs (DSP48)
                res["dsp"] = math.ceil(pe / 4) * simd
            else:
                res["mvau_lut"] = _mvau_hls_lut(pe, simd, W, a_in, mw)
            out = LayerCost(cyc, res, met, pe, simd)
            if s.op == "conv" and k > 1:  # padding (no resources) + sliding window in front of the MVAU
                pad = k // 2
                sw = _swg(s.cin, s.h_in, s.w_in, k, max(1, s.stride), pad, a_in, T)
                fmp = 0
                for d in divisors(s.cin):
                    fmp = (s.cin // d) * (s.h_in + 2 * pad) * (s.w_in + 2 * pad)
                    if fmp <= T:
                        break
                res["swg_lut"] = sw.lut
                out.cycles = max(cyc, sw.cycles, fmp)
                out.met = met and sw.met and fmp <= T
            return out
        if s.op == "dwconv":  # VVAU: PE over channels, then SIMD over the kernel window
            k = max(1, s.kernel)
            vecs = s.h_out * s.w_out
            pe, cyc = 1, s.cout * k * k * vecs
            for p in divisors(s.cout):
                pe, cyc = p, (s.cout // p) * k * k * vecs
                if cyc <= T:
                    break
            simd = 1
            if cyc > T:
                for q in divisors(k * k):
                    simd, cyc = q, (s.cout // pe) * (k * k // q) * vecs
                    if cyc <= T:
                        break
            res["mvau_bram"] = _mvau_bram(pe, simd, W, k * k, s.cout)
            res["mvau_lut"] = _mvau_hls_lut(pe, simd, W, a_in, k * k)
            sw = _swg(s.cin, s.h_in, s.w_in, k, max(1, s.stride), k // 2, a_in, T, depthwise=True, simd=pe)
            res["swg_lut"] = sw.lut
            return LayerCost(max(cyc, sw.cycles), res, cyc <= T and sw.met, pe, simd)
        if s.op == "pool":
            if s.h_out == 1 and s.w_out == 1:   # global average pool: GlobalAccPool + a thresholding
                vecs = s.h_in * s.w_in
                pe, cyc = 1, vecs * s.cin + s.cin
                for p in divisors(s.cin):
                    pe, cyc = p, vecs * (s.cin // p) + s.cin // p
                    if cyc <= T:
                        break
                res["thr_lut"] = THR_ACT[0] + THR_ACT[1] * s.cin
                return LayerCost(cyc, res, cyc <= T, pe)
            k = max(2, s.kernel)
            st = max(1, s.stride or k)
            vecs = s.h_out * s.w_out
            pe = 1
            for p in divisors(s.cin):   # Pool_hls PE, shared with its depthwise sliding window
                pe = p
                sw = _swg(s.cin, s.h_in, s.w_in, k, st, 0, A, T, depthwise=True, simd=p)
                cyc = max((s.cin // p) * k * k * vecs, sw.cycles)
                if cyc <= T:
                    break
            res["swg_lut"] = sw.lut
            return LayerCost(cyc, res, cyc <= T, pe)
        return LayerCost(0, res)  # add / concat: not mapped by FINN's default flow (see hw_prune.finn.proxy)

    def _fixed(self, specs: Sequence[LayerSpec], T: int) -> LayerCost:
        """Nodes that belong to no LayerSpec: the thresholding that quantizes the input image."""
        first = next((s for s in specs if s.op in MAC_OPS), None)
        res = {c: 0.0 for c in CATEGORIES}
        if first is None:
            return LayerCost(0, res)
        vecs, ch = first.h_in * first.w_in, first.cin
        pe, cyc = 1, vecs * ch
        for p in divisors(ch):
            pe, cyc = p, vecs * (ch // p)
            if cyc <= T:
                break
        res["thr_lut"] = THR_IN[0] + THR_IN[1] * pe
        return LayerCost(cyc, res, cyc <= T, pe)

    def _resources(self, lc: LayerCost) -> tuple[float, float, float]:
        sc = self.scales
        lut = sc["mvau_lut"] * lc.res["mvau_lut"] + sc["swg_lut"] * lc.res["swg_lut"] + sc["thr_lut"] * lc.res["thr_lut"]
        return lut, sc["mvau_bram"] * lc.res["mvau_bram"], sc["dsp"] * lc.res["dsp"]

    def _util(self, lut: float, bram: float, dsp: float) -> dict[str, float]:
        t = self.target

        def f(used: float, cap: int) -> float:
            return used / cap if cap else (0.0 if used <= 0 else float("inf"))

        return {"luts": f(lut, t.luts), "brams": f(bram, t.brams), "dsps": f(dsp, t.dsps)}

    def layer_util(self, s: LayerSpec, T: int | None = None) -> float:
        """One layer's cost at T: the largest of its LUT / BRAM / DSP fractions of the part (conservative:
        summing these over layers is >= the utilization of any one resource). A layer that cannot reach T
        at full parallelism costs a whole part on top, so a search never picks it."""
        lc = self.layer_cost(s, self.T if T is None else T)
        u = max(self._util(*self._resources(lc)).values())
        return u + (0.0 if lc.met else 1.0)

    # -- CostModel protocol ------------------------------------------------------------------------
    def predict_layer(self, spec: LayerSpec) -> float:
        return self.layer_util(spec)

    def predict_layers(self, specs: Sequence[LayerSpec]) -> list[float]:
        T = self.T
        return [self.layer_util(s, T) for s in specs]

    def totals(self, specs: Sequence[LayerSpec], T: int) -> FinnTotals:
        """Model totals at cycle target T. Like SetFolding's two-pass relaxation, a T that some node cannot
        reach is replaced by the cycles the design did reach (a balanced pipeline at that speed)."""
        tot = self._totals(specs, T)
        if not tot.met and tot.cycles > T:
            t2 = self._totals(specs, tot.cycles)
            t2.met, t2.T = False, T
            t2.per_layer = tot.per_layer
            return t2
        return tot

    def _totals(self, specs: Sequence[LayerSpec], T: int) -> FinnTotals:
        lut = bram = dsp = 0.0
        cyc, met = 0, True
        per = []
        for s in specs:
            lc = self.layer_cost(s, T)
            r = self._resources(lc)
            lut, bram, dsp = lut + r[0], bram + r[1], dsp + r[2]
            cyc, met = max(cyc, lc.cycles), met and lc.met
            per.append(max(self._util(*r).values()) + (0.0 if lc.met else 1.0))
        fx = self._fixed(specs, T)
        r = self._resources(fx)
        lut, bram, dsp = lut + r[0], bram + r[1], dsp + r[2]
        cyc, met = max(cyc, fx.cycles), met and fx.met
        return FinnTotals(T, cyc, lut, bram, dsp, met, self._util(lut, bram, dsp), per)

    def fits(self, tot: FinnTotals) -> bool:
        return tot.met and tot.max_util <= self.max_util + 1e-12

    def max_fps(self, specs: Sequence[LayerSpec]) -> tuple[float, FinnTotals | None]:
        """Highest fps whose folding fits the part: the smallest T that fits (bisection; resources only
        shrink as T grows) and the fps of the folding FINN picks there (f_clk / its slowest node)."""
        specs = list(specs)
        hi = max(self.totals(specs, 1 << 62).cycles, 1)   # fully folded: the slowest design there is
        top = self.totals(specs, hi)
        if not self.fits(top):
            return 0.0, None
        lo = 1
        if self.fits(self.totals(specs, lo)):
            t = self.totals(specs, lo)
            return self.clock_hz / max(1, t.cycles), t
        while hi - lo > 1:           # invariant: lo does not fit, hi fits
            mid = (lo + hi) // 2
            if self.fits(self.totals(specs, mid)):
                hi = mid
            else:
                lo = mid
        t = self.totals(specs, hi)
        return self.clock_hz / max(1, t.cycles), t

    def predict_model(self, specs: Sequence[LayerSpec]) -> ModelPrediction:
        """At the target: latency_ms = utilization of the most used resource (the budget quantity; fits
        when <= max_util), per_layer_ms = per-layer cost, fps = highest fps whose folding fits."""
        specs = list(specs)
        fps, _ = self.max_fps(specs)
        if not self.target_fps:
            return ModelPrediction(latency_ms=1000.0 / fps if fps else math.inf, fps=fps, per_layer_ms=[],
                                   fits=fps > 0)
        tot = self.totals(specs, self.T)
        return ModelPrediction(latency_ms=tot.max_util + (0.0 if tot.met else 1.0), fps=fps,
                               per_layer_ms=tot.per_layer, fits=self.fits(tot))

    # -- calibration against FINN's reports --------------------------------------------------------
    def report_categories(self, report: Any) -> dict[str, float]:
        """FINN's per-layer estimates summed into this model's categories."""
        out = {c: 0.0 for c in CATEGORIES}
        for r in report.layers:
            op = r["op"]
            if op.startswith(("MVAU", "VVAU")):
                out["mvau_lut"] += float(r.get("LUT", 0))
                out["mvau_bram"] += float(r.get("BRAM_18K", 0))
                out["dsp"] += float(r.get("DSP", 0))
            elif op.startswith("ConvolutionInputGenerator"):
                out["swg_lut"] += float(r.get("LUT", 0))
            elif op.startswith("Thresholding"):
                out["thr_lut"] += float(r.get("LUT", 0))
        return out

    def model_categories(self, specs: Sequence[LayerSpec], T: int) -> dict[str, float]:
        out = {c: 0.0 for c in CATEGORIES}
        tot = self._totals(specs, T)
        if not tot.met and tot.cycles > T:   # two-pass relaxation, as in totals()
            T = tot.cycles
        for lc in [self.layer_cost(s, T) for s in specs] + [self._fixed(specs, T)]:
            for c in CATEGORIES:
                out[c] += lc.res[c]
        return out

    def calibrate(self, pairs: Iterable[tuple[Sequence[LayerSpec], Any]]) -> dict[str, float]:
        """Fit the per-category scales to FINN estimate builds: pairs of (specs, BuildReport of those
        widths at some target). Least squares through the origin per category. Returns the new scales."""
        num = {c: 0.0 for c in CATEGORIES}
        den = {c: 0.0 for c in CATEGORIES}
        for specs, rep in pairs:
            T = max(1, int(self.clock_hz / float(rep.target_fps)))
            m = self.model_categories(list(specs), T)
            f = self.report_categories(rep)
            for c in CATEGORIES:
                num[c] += f[c] * m[c]
                den[c] += m[c] * m[c]
        for c in CATEGORIES:
            if den[c] > 0 and num[c] > 0:
                self.scales[c] = num[c] / den[c]
        return dict(self.scales)

    def rescale(self, specs: Sequence[LayerSpec], report: Any) -> dict[str, float]:
        """Closed loop: multiply each resource's scales by FINN's total / the model's total for one build
        (so the same design is predicted as FINN reported it). Returns the factors applied."""
        T = max(1, int(self.clock_hz / float(report.target_fps)))
        tot = self.totals(list(specs), T)
        f = {}
        for cats, model, finn in ((("mvau_lut", "swg_lut", "thr_lut"), tot.luts, report.luts),
                                  (("mvau_bram",), tot.brams, report.brams), (("dsp",), tot.dsps, report.dsps)):
            k = finn / model if model > 0 and finn > 0 else 1.0
            for c in cats:
                self.scales[c] *= k
            f[cats[0].split("_")[-1]] = k
        self._memo.clear()
        return f

    def provenance(self) -> dict[str, Any]:
        from hw_prune.provenance import provenance

        return provenance(self.board, NAME, True, part=self.target.part, clock_ns=self.target.clock_ns,
                          weight_bits=self.weight_bits, act_bits=self.act_bits, max_util=self.max_util,
                          target_fps=self.target_fps, scales=dict(self.scales),
                          note="analytical model of finn-plus' folding and resource ESTIMATES, calibrated "
                               "against FINN estimate builds; not a measurement")


__all__ = ["FinnFoldingCost", "FinnTotals", "divisors"]
