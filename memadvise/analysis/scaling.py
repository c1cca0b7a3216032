"""How a step grows with one dimension (batch, sequence length): fitted from profiles of
the same script at two or more sizes, storage by storage.

The step's structure — ops, storages, saved tensors, module calls, their event clocks —
does not change with the batch size or the sequence length; only the bytes of each
storage and the time of each op do. Each storage's bytes are fitted as ``c·d^p`` with p
in {0, 1, 2, 3} when that is exact on every profile (attention scores grow with seq²),
otherwise as a polynomial ``a + b·d (+ c·d²)``; op times as ``a + b·d``. A synthesized
profile at any size then goes through the simulator like a measured one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np

from memadvise._errors import InputFileError
from memadvise.schema.profile import Profile

POWERS = (0, 1, 2, 3)


@dataclass
class FittedSeries:
    """Fitted values per element: ``power`` ≥ 0 with ``coef`` for exact power laws,
    ``power == -1`` with ``poly`` (lowest degree first) otherwise."""

    power: np.ndarray
    coef: np.ndarray
    poly: np.ndarray

    def at(self, d: float) -> np.ndarray:
        exact = self.power >= 0
        out = np.empty(len(self.power), dtype=np.float64)
        out[exact] = self.coef[exact] * np.power(float(d), self.power[exact])
        if (~exact).any():
            ds = np.power(float(d), np.arange(self.poly.shape[1]))
            out[~exact] = self.poly[~exact] @ ds
        return np.maximum(out, 0.0)

    def kinds(self) -> dict[str, int]:
        names = {0: "constant", 1: "linear", 2: "quadratic", 3: "cubic", -1: "polynomial"}
        vals, counts = np.unique(self.power, return_counts=True)
        return {names[int(v)]: int(c) for v, c in zip(vals, counts)}


def fit_series(values: np.ndarray, ys: np.ndarray, *, max_degree: int = 2) -> FittedSeries:
    """``ys[k, i]``: element i measured at ``values[k]``."""
    values = np.asarray(values, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    n_points, n = ys.shape
    power = np.full(n, -1, dtype=np.int64)
    coef = np.zeros(n)
    base = ys[0]
    for p in POWERS:
        scale = (values / values[0]) ** p
        pred = np.outer(scale, base)
        ok = (power < 0) & np.all(np.abs(pred - ys) <= 1e-9 * np.maximum(1.0, np.abs(ys)), axis=0)
        power[ok] = p
        coef[ok] = base[ok] / values[0] ** p
    degree = min(max_degree, n_points - 1)
    vander = np.vander(values, degree + 1, increasing=True)
    poly = np.zeros((n, degree + 1))
    rest = power < 0
    if rest.any():
        sol, *_ = np.linalg.lstsq(vander, ys[:, rest], rcond=None)
        poly[rest] = sol.T
    return FittedSeries(power=power, coef=coef, poly=poly)


class ScalingModel:
    """Profiles of one script at several values of one dimension, fitted."""

    def __init__(self, profiles: list[Profile], values: list[float], dimension: str) -> None:
        if len(profiles) < 2:
            raise InputFileError(f"fitting {dimension} needs profiles at two or more sizes; got {len(profiles)}")
        order = np.argsort(values)
        self.profiles = [profiles[i] for i in order]
        self.values = np.asarray([values[i] for i in order], dtype=np.float64)
        if len(set(self.values.tolist())) != len(self.values):
            raise InputFileError(f"two profiles have the same {dimension}; profile different sizes")
        self.dimension = dimension
        _check_same_structure(self.profiles, dimension)
        traces = [p.trace for p in self.profiles]
        self.bytes = fit_series(self.values, np.asarray([t["storages"]["bytes"] for t in traces]))
        self.scratch = fit_series(self.values, np.asarray([t["ops"].get("scratch", [0] * len(t["ops"]["name"])) for t in traces]))
        self.untracked = (fit_series(self.values, np.asarray([t["ops"]["untracked"] for t in traces]))
                          if all(t["ops"].get("untracked") for t in traces) else None)
        self.dur = fit_series(self.values, np.asarray([t["ops"]["dur_us"] for t in traces]), max_degree=1)
        self.step = fit_series(self.values, np.asarray([[p.records.summary.step_time_s] for p in self.profiles]), max_degree=1)
        self.units_act = fit_series(self.values, np.asarray([[u.activation_bytes for u in p.records.units] for p in self.profiles]))

    def profile_at(self, value: float) -> Profile:
        """A profile of the step at ``value`` of the dimension, for the simulator."""
        base = self.profiles[-1]
        doc = copy.copy(base.doc)
        trace = dict(base.trace)
        trace["storages"] = dict(trace["storages"], bytes=np.rint(self.bytes.at(value)).astype(np.int64).tolist())
        ops = dict(trace["ops"])
        ops["scratch"] = np.rint(self.scratch.at(value)).astype(np.int64).tolist()
        if self.untracked is not None:
            ops["untracked"] = np.rint(self.untracked.at(value)).astype(np.int64).tolist()
        ops["dur_us"] = self.dur.at(value).tolist()
        trace["ops"] = ops
        doc["trace"] = trace
        step_s = float(self.step.at(value)[0])
        doc["summary"] = dict(base.summary, step_time_s=max(step_s, 1e-9))
        acts = self.units_act.at(value)
        doc["units"] = [dict(u, activation_bytes=int(a)) for u, a in zip(base.units, acts)]
        doc["settings"] = dict(base.doc.get("settings", {}), vary={"name": self.dimension, "value": value, "predicted": True})
        return Profile(doc=doc, path=None)

    def summary(self) -> dict:
        return {"dimension": self.dimension, "profiled": self.values.tolist(), "storages": self.bytes.kinds()}


def _check_same_structure(profiles: list[Profile], dimension: str) -> None:
    first = profiles[0]
    for p in profiles[1:]:
        a, b = first.script, p.script
        if a.get("sha256") != b.get("sha256") or a.get("path") != b.get("path"):
            raise InputFileError(f"the profiles are of different scripts ({a.get('path')} and {b.get('path')}); fit one script at several sizes")
        if first.device_type != p.device_type:
            raise InputFileError("the profiles were taken on different devices; fit profiles of one device")
        ta, tb = first.trace, p.trace
        names_a = [ta["strings"][i] for i in ta["ops"]["name"]]
        names_b = [tb["strings"][i] for i in tb["ops"]["name"]]
        if (names_a != names_b or ta["storages"]["alloc"] != tb["storages"]["alloc"]
                or len(ta["saves"]["storage"]) != len(tb["saves"]["storage"]) or len(first.units) != len(p.units)):
            raise InputFileError(
                f"the step runs different ops at different {dimension} values (other settings changed too, or the "
                "model branches on the size); profile with only the varied value changed"
            )


def check_dimension_changed(profiles: list[Profile], values: list[float], dimension: str) -> None:
    """The varied value must show up in the model's inputs: some dimension of some input
    tensor equals the value in every profile (or scales with it)."""
    shapes = [(p.doc.get("model") or {}).get("input_shapes") for p in profiles]
    if any(s is None for s in shapes):
        return  # no record of the inputs (older profile, or a model without tensor args)
    if all(s == shapes[0] for s in shapes):
        raise InputFileError(
            f"the model's inputs have the same shapes at every {dimension} value ({shapes[0]}); "
            f"the script does not use the value it was given"
        )
    for i, (_dtype, shape) in enumerate(shapes[0]):
        for axis in range(len(shape)):
            seen = []
            for s in shapes:
                if i < len(s) and axis < len(s[i][1]):
                    seen.append(s[i][1][axis])
            if len(seen) == len(values) and all(int(v) == x for v, x in zip(values, seen)):
                return
    raise InputFileError(
        f"no input dimension of the model equals the {dimension} values {[int(v) for v in values]} "
        f"(input shapes: {[s for s in shapes]}); is {dimension} the right name for what changed?"
    )
