"""The simulator: the single source of predicted numbers.

Given a profile and a set of actions on units, it replays the recorded step with
PyTorch's exact semantics and returns the predicted memory timeline, its peak (total and
by category), activation memory and step time.

Semantics (``torch.utils.checkpoint``, non-reentrant, as of PyTorch 2.4+):

* **checkpoint** of a unit call: every tensor autograd saves inside the call is replaced
  by a holder, so it lives only as long as the program's own references keep it (its
  *natural* death, measured at profile time), unless a save outside the call still
  holds it. The call's inputs (args and kwargs) are kept by the checkpoint frame until
  the last of the call's saved-tensor slots is released in backward; so is the CPU RNG
  state (5056 bytes, ``torch.get_rng_state()``) stashed by ``preserve_rng_state``.
  When backward first unpacks one of the call's saved tensors, the call's forward is
  re-run up to the op that made its last saved tensor (early stop); tensors it saves are
  kept until the backward node that needs them releases them, everything else dies
  where it died in the original forward or when recompute stops.
* **selective** (``create_selective_checkpoint_contexts``): as checkpoint, but outputs
  of the policy's ops are cached in forward and handed to the recompute instead of
  being recomputed; cached outputs past the early-stop point stay until the frame dies.
* **offload** (``torch.autograd.graph.save_on_cpu``, CUDA only): saved tensors leave the
  device when packed and come back, as new device tensors, when unpacked; transfer
  time at the profile's PCIe bandwidth.

The whole step is replayed, optimizer included, so a peak that sits in
``optimizer.step()`` stays there under every plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

from memadvise.schema.actions import OFFLOAD, POLICIES, SELECTIVE, Action, display_unit
from memadvise.schema.timeline import live_bytes
from memadvise.schema.trace import Timeline, Trace, category_dict
from memadvise.schema.categories import N_CATEGORIES, Category, Phase
from memadvise.schema.profile import Profile

CPU_RNG_STATE_BYTES = 5056  # torch.get_rng_state().numel() for the default CPU generator (mt19937)
DEFAULT_CHECKPOINT_CALL_MS = 0.1  # used only when a profile carries no calibration
DEFAULT_SELECTIVE_OP_US = 20.0
DEFAULT_PCIE_BYTES_PER_S = 12e9  # PCIe 4.0 x16, one direction, as measured in practice

_ACT = int(Category.ACTIVATION)
_TMP = int(Category.TEMPORARY)


class PlanError(ValueError):
    """A set of actions the simulator cannot apply (unknown unit, nested actions, offload on CPU)."""


@dataclass
class SimResult:
    """Predicted figures of one step under a set of actions.

    peak_bytes: largest live total on the training device, in bytes.
    activation_bytes: bytes held for backward when backward starts (max over backward
        passes): saved tensors, checkpoint inputs and selective caches; the 5 KiB RNG
        state a CPU checkpoint stashes counts in the peak only, as in the measurement.
    step_time_s: predicted step time in seconds; overhead = step_time_s / baseline - 1.
    """

    peak_bytes: int
    by_category_at_peak: dict[str, int]
    activation_bytes: int
    step_time_s: float
    overhead: float
    recompute_ms: float
    peak_phase: str
    peak_in_recompute: bool
    peak_op: str | None
    regions: int
    timeline: Timeline | None = None
    notes: list[str] = field(default_factory=list)

    def predicted(self) -> dict:
        return {
            "peak_bytes": int(self.peak_bytes),
            "activation_bytes": int(self.activation_bytes),
            "step_time_s": float(self.step_time_s),
            "overhead": float(self.overhead),
            "by_category_at_peak": dict(self.by_category_at_peak),
            "peak_phase": self.peak_phase,
        }


@dataclass
class _Region:
    call: int
    action: Action
    saves: np.ndarray  # indices of the forward saves packed inside the call
    frame_death: float
    trigger: float | None  # clock of the first unpack (recompute inserted right after)
    last_pack: int
    stop_op: int  # recompute runs ops [start_op, stop_op)


@dataclass
class _Effect:
    """One acted call's contribution: extra storages, storages it keeps longer, recompute
    op clocks and time."""

    alloc: np.ndarray
    free: np.ndarray
    nbytes: np.ndarray
    cat: np.ndarray
    hold_sids: np.ndarray
    hold_free: np.ndarray
    q: np.ndarray
    us: float
    q_scratch: np.ndarray = None  # type: ignore[assignment]

    @classmethod
    def of(cls, alloc, free, nbytes, cat, hold_sids, hold_free, q, us, q_scratch=None) -> "_Effect":
        def cat_(xs, dtype):
            return np.concatenate([np.asarray(x, dtype=dtype) for x in xs]) if xs else np.zeros(0, dtype=dtype)

        q = np.asarray(q, dtype=np.float64)
        ws = np.zeros(len(q), dtype=np.int64) if q_scratch is None else np.asarray(q_scratch, dtype=np.int64)
        return cls(cat_(alloc, np.float64), cat_(free, np.float64), cat_(nbytes, np.int64), cat_(cat, np.int8),
                   cat_(hold_sids, np.int64), cat_(hold_free, np.float64), q, float(us), ws)


@dataclass
class Replacement:
    """A change that is not a set of unit actions (a compiled region, built by
    ``analysis.compile_plans``): forward saves dropped (their storages die naturally),
    storages that do not exist under the change (``erase``), storages and time added
    (``effect``), and bytes held for backward that the added storages stand for."""

    saves: np.ndarray
    erase: np.ndarray
    effect: "_Effect"
    activation_bytes: int


class Simulator:
    """Predict the step of ``profile`` under sets of actions. Cheap to call repeatedly."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.trace = Trace(profile)
        self.unit_index = profile.unit_index()
        self.units = profile.units
        cal = profile.doc.get("calibration") or {}
        self.checkpoint_call_ms = float(cal.get("checkpoint_call_ms", DEFAULT_CHECKPOINT_CALL_MS))
        self.selective_op_us = float(cal.get("selective_op_us", DEFAULT_SELECTIVE_OP_US))
        self.pcie_bytes_per_s = float(cal.get("pcie_bytes_per_s", DEFAULT_PCIE_BYTES_PER_S))
        self.base_step_s = float(profile.summary["step_time_s"])
        self.time_scale = float(profile.trace.get("time_scale", 1.0))
        t = self.trace
        self._fwd_saves = np.nonzero(t.forward_saves)[0]
        self._valid_saves = t.sv_storage >= 0
        self._cum_dur = np.concatenate(([0.0], np.cumsum(t.op_dur_us)))
        self._op_names = np.asarray(t.strings, dtype=object)[t.op_name] if len(t.op_name) else np.asarray([], dtype=object)
        self._baseline: SimResult | None = None
        self._region_cache: dict[int, _Region] = {}
        self._effect_cache: dict[tuple, _Effect] = {}
        self._op_clock_f = t.op_clock.astype(np.float64)
        self._fwd_saved_storages = np.unique(t.sv_storage[t.forward_saves])

    # ------------------------------------------------------------------ public
    def baseline(self) -> SimResult:
        if self._baseline is None:
            self._baseline = self.simulate(())
        return self._baseline

    def simulate(self, actions: Iterable[Action], *, timeline: bool = False,
                 replace: Replacement | None = None) -> SimResult:
        t = self.trace
        actions = list(actions)
        regions = self._regions(actions)
        effects = [self._effect(r) for r in regions] + ([replace.effect] if replace is not None else [])
        n_st = len(t.st_bytes)
        free = t.st_free.astype(np.float64)
        held = np.zeros(n_st, dtype=bool)  # held for backward in this plan (activation)

        if effects:
            dropped = np.zeros(len(t.sv_storage), dtype=bool)
            for r in regions:
                dropped[r.saves] = True
            if replace is not None:
                dropped[replace.saves] = True
            # storages whose saves were dropped now die at their natural death, unless a
            # save that was kept still holds them
            kept = self._valid_saves & ~dropped
            kept_release = np.full(n_st, -1.0)
            np.maximum.at(kept_release, t.sv_storage[kept], t.sv_release[kept].astype(np.float64))
            held[t.sv_storage[kept & (t.sv_phase == Phase.FORWARD)]] = True
            if dropped.any():
                aff = np.unique(t.sv_storage[dropped])
                free[aff] = np.maximum(t.st_nat[aff].astype(np.float64), kept_release[aff])
        else:
            held[self._fwd_saved_storages] = True
        for e in effects:
            if len(e.hold_sids):
                free[e.hold_sids] = np.maximum(free[e.hold_sids], e.hold_free)
                held[e.hold_sids] = True

        if replace is not None and len(replace.erase):
            free[replace.erase] = t.st_alloc[replace.erase]  # live on [alloc, alloc): never
        extra_alloc = [e.alloc for e in effects]
        extra_free = [e.free for e in effects]
        extra_bytes = [e.nbytes for e in effects]
        extra_cat = [e.cat for e in effects]
        query = [self._op_clock_f] + [e.q for e in effects]
        query_phase = [t.op_phase] + [np.full(len(e.q), int(Phase.BACKWARD), dtype=np.int8) for e in effects]
        query_rc = [np.zeros(len(t.op_clock), dtype=bool)] + [np.ones(len(e.q), dtype=bool) for e in effects]
        query_ws = [t.op_scratch] + [e.q_scratch for e in effects]
        extra_us = float(sum(e.us for e in effects))

        # categories under the plan (same rules as the measurement)
        cat = self._categories(free, held)
        on = t.on_device
        alloc_all = np.concatenate([t.st_alloc[on].astype(np.float64)] + extra_alloc)
        free_all = np.concatenate([free[on]] + extra_free)
        bytes_all = np.concatenate([t.st_bytes[on]] + [np.asarray(b, dtype=np.int64) for b in extra_bytes])
        cat_all = np.concatenate([cat[on]] + [np.asarray(c, dtype=np.int8) for c in extra_cat])
        q = np.concatenate(query)
        q_phase = np.concatenate(query_phase)
        q_rc = np.concatenate(query_rc)
        q_ws = np.concatenate(query_ws)
        order = np.argsort(q, kind="stable")
        q, q_phase, q_rc, q_ws = q[order], q_phase[order], q_rc[order], q_ws[order]

        total = live_bytes(q, alloc_all, free_all, bytes_all) + q_ws
        k = int(np.argmax(total)) if len(total) else 0
        by_peak = np.zeros(N_CATEGORIES, dtype=np.int64)
        if len(q):
            qk = np.asarray([q[k]])
            for ci in range(N_CATEGORIES):
                m = cat_all == ci
                if m.any():
                    by_peak[ci] = live_bytes(qk, alloc_all[m], free_all[m], bytes_all[m])[0]
            by_peak[_TMP] += q_ws[k]
        activation = self._activation(free, cat) + (replace.activation_bytes if replace is not None else 0)
        step_s = self.base_step_s + extra_us / 1e6
        peak_op = None
        if len(q) and not q_rc[k]:
            peak_op = t.op_name_str(int(order[k]))
        tl = None
        if timeline:
            from memadvise.schema.timeline import live_by_category

            tl = Timeline(
                clock=q,
                phase=q_phase,
                by_category=live_by_category(q, alloc_all, free_all, bytes_all, cat_all, N_CATEGORIES),
                recompute=q_rc,
            )
        return SimResult(
            peak_bytes=int(total[k]) if len(total) else 0,
            by_category_at_peak=category_dict(by_peak),
            activation_bytes=int(activation),
            step_time_s=step_s,
            overhead=(step_s / self.base_step_s - 1.0) if self.base_step_s > 0 else 0.0,
            recompute_ms=extra_us / 1000.0,
            peak_phase=Phase(int(q_phase[k])).label if len(q) else "forward",
            peak_in_recompute=bool(q_rc[k]) if len(q) else False,
            peak_op=peak_op,
            regions=len(regions),
            timeline=tl,
        )

    def cost_us(self, actions: Iterable[Action]) -> float:
        """Predicted extra step time of ``actions`` in microseconds, without replaying
        memory. Exactly the time term of ``simulate``: per-region costs add up."""
        return float(sum(self._effect(r).us for r in self._regions(list(actions))))

    # ------------------------------------------------------------------ pieces
    def _regions(self, actions: Sequence[Action]) -> list[_Region]:
        t = self.trace
        calls: list[tuple[int, Action]] = []
        seen_units: set[str] = set()
        for a in actions:
            if a.unit in seen_units:
                raise PlanError(f"unit {display_unit(a.unit)} has more than one action")
            seen_units.add(a.unit)
            u = self.unit_index.get(a.unit)
            if u is None:
                raise PlanError(f"unit {display_unit(a.unit)} is not in the profile")
            if a.action == OFFLOAD and t.device_type != "cuda":
                raise PlanError("offload (save_on_cpu) needs a CUDA profile")
            for c in t.calls_of_unit.get(u, []):
                calls.append((c, a))
        calls.sort()
        end = t.call_subtree_end
        for (c1, a1), (c2, a2) in zip(calls, calls[1:]):
            if c2 < end[c1]:
                raise PlanError(
                    f"actions on {display_unit(a1.unit)} and {display_unit(a2.unit)} are nested; "
                    "a plan acts on disjoint units"
                )
        return [self._region(c, a) for c, a in calls]

    def _region(self, c: int, a: Action) -> _Region:
        base = self._region_cache.get(c)
        if base is None:
            t = self.trace
            fwd = self._fwd_saves
            saves = fwd[(t.sv_call[fwd] >= c) & (t.sv_call[fwd] < t.call_subtree_end[c])]
            if len(saves):
                frame_death = float(t.sv_release[saves].max())
                unpacked = t.sv_unpack[saves]
                unpacked = unpacked[unpacked >= 0]
                trigger = float(unpacked.min()) if len(unpacked) else None
                last_pack = int(t.sv_pack[saves].max())
            else:
                frame_death, trigger, last_pack = float(t.call_end[c]), None, int(t.call_start[c])
            start_op, end_op = int(t.call_start_op[c]), int(t.call_end_op[c])
            stop_op = int(np.searchsorted(t.op_clock, last_pack, side="left"))
            stop_op = min(max(stop_op, start_op), end_op)
            base = self._region_cache[c] = _Region(c, a, saves, frame_death, trigger, last_pack, stop_op)
        return _Region(c, a, base.saves, base.frame_death, base.trigger, base.last_pack, base.stop_op)

    def _effect(self, r: _Region) -> "_Effect":
        key = (r.call, r.action.action, r.action.policy)
        e = self._effect_cache.get(key)
        if e is None:
            e = self._effect_cache[key] = self._compute_effect(r)
        return e

    def _compute_effect(self, r: _Region) -> "_Effect":
        """What acting on one call changes, besides dropping its saved-tensor slots."""
        t = self.trace
        c = r.call
        start_op, end_op = int(t.call_start_op[c]), int(t.call_end_op[c])
        start = float(t.call_start[c])
        alloc: list[np.ndarray] = []
        free_: list[np.ndarray] = []
        nbytes: list[np.ndarray] = []
        cat: list[np.ndarray] = []
        hold_sids: list[np.ndarray] = []
        hold_free: list[np.ndarray] = []
        q = np.zeros(0)
        if r.action.action == OFFLOAD:
            us = self._offload_us(r)
            for i in r.saves:
                s = t.sv_storage[i]
                if t.sv_unpack[i] >= 0 and t.on_device[s]:  # back on the device for its node
                    alloc.append(np.asarray([float(t.sv_unpack[i])]))
                    free_.append(np.asarray([float(t.sv_release[i])]))
                    nbytes.append(np.asarray([int(t.st_bytes[s])]))
                    cat.append(np.asarray([_ACT]))
            return _Effect.of(alloc, free_, nbytes, cat, hold_sids, hold_free, q, us)
        us = self.checkpoint_call_ms * 1000.0
        rng_on_device = t.device_type == "cpu"
        # the frame keeps the call's inputs (and the RNG state) until its last slot is released
        if len(r.saves):
            inputs = np.asarray(sorted(set(t.call_inputs[c])), dtype=np.int64)
            hold_sids.append(inputs)
            hold_free.append(np.full(len(inputs), r.frame_death))
        if rng_on_device:
            death = r.frame_death if len(r.saves) else float(t.call_end[c])
            alloc.append(np.asarray([start]))
            free_.append(np.asarray([death]))
            nbytes.append(np.asarray([CPU_RNG_STATE_BYTES]))
            cat.append(np.asarray([_ACT]))
        cached_ops = self._cached_mask(r, start_op, end_op)
        if cached_ops is not None and cached_ops.any():
            us += self.selective_op_us * (end_op - start_op)  # the caching mode over the forward
        if r.trigger is None:
            # never unpacked: nothing is recomputed; cached outputs live with the frame
            if cached_ops is not None:
                self._hold_cached(r, cached_ops, start_op, hold_sids, hold_free, recompute_free=None)
            return _Effect.of(alloc, free_, nbytes, cat, hold_sids, hold_free, q, us)

        # recompute: ops [start_op, stop_op) re-run right after the trigger
        stop = r.stop_op
        span = float(r.last_pack) - start + 2.0

        def v(x):
            return r.trigger + (np.asarray(x, dtype=np.float64) - start + 1.0) / span

        rc_mask = ~cached_ops[: stop - start_op] if cached_ops is not None else np.ones(stop - start_op, dtype=bool)
        q = v(t.op_clock[start_op:stop][rc_mask])
        q_scratch = t.op_scratch[start_op:stop][rc_mask]
        made = np.nonzero((t.st_op >= start_op) & (t.st_op < stop))[0]
        if len(made):
            # per storage: the release of its slots saved inside this call
            rel = np.full(len(t.st_bytes), -1.0)
            np.maximum.at(rel, t.sv_storage[r.saves], t.sv_release[r.saves].astype(np.float64))
            saved_here = rel[made] >= 0
            nat_rc = np.where(t.st_nat[made] < r.last_pack, v(t.st_nat[made].astype(np.float64)), v(float(r.last_pack)))
            rc_free = np.where(saved_here, rel[made], nat_rc)
            is_cached = cached_ops[t.st_op[made] - start_op] if cached_ops is not None else np.zeros(len(made), dtype=bool)
            # cached outputs: the forward tensor itself lives on into the recompute
            if is_cached.any():
                hold_sids.append(made[is_cached])
                hold_free.append(rc_free[is_cached])
            nm = ~is_cached
            alloc.append(v(t.st_alloc[made[nm]].astype(np.float64)))
            free_.append(rc_free[nm])
            nbytes.append(np.where(t.on_device[made[nm]], t.st_bytes[made[nm]], 0))
            cat.append(np.where(saved_here[nm], _ACT, _TMP).astype(np.int8))
        if cached_ops is not None:
            self._hold_cached(r, cached_ops, start_op, hold_sids, hold_free, recompute_free=stop)
            us += self.selective_op_us * (stop - start_op)
        if rng_on_device:  # fork_rng stashes the state again during recompute
            alloc.append(np.asarray([v(start)]))
            free_.append(np.asarray([v(float(r.last_pack))]))
            nbytes.append(np.asarray([CPU_RNG_STATE_BYTES]))
            cat.append(np.asarray([_TMP]))
        us += self._recompute_us(c, start_op, end_op, stop, cached_ops)
        return _Effect.of(alloc, free_, nbytes, cat, hold_sids, hold_free, q, us, q_scratch)

    def _cached_mask(self, r: _Region, start_op: int, end_op: int) -> np.ndarray | None:
        if r.action.action != SELECTIVE:
            return None
        keep = POLICIES[r.action.policy or ""]
        names = self._op_names[start_op:end_op]
        return np.fromiter((n in keep for n in names), dtype=bool, count=len(names))

    def _hold_cached(self, r: _Region, cached: np.ndarray, start_op: int, hold_sids: list, hold_free: list,
                     recompute_free: int | None) -> None:
        """Cached outputs past the early stop (or never consumed) live until the frame dies."""
        t = self.trace
        idx = np.nonzero(cached)[0] + start_op
        if recompute_free is not None:
            idx = idx[idx >= recompute_free]
        if not len(idx):
            return
        made = np.nonzero(np.isin(t.st_op, idx))[0]
        hold_sids.append(made)
        hold_free.append(np.full(len(made), r.frame_death))

    def _recompute_us(self, c: int, start_op: int, end_op: int, stop: int, cached: np.ndarray | None) -> float:
        """Time to re-run ops [start_op, stop) of call ``c``: the call's forward wall time in
        an uninstrumented step (its ops and its Python, as the profile measured them) times
        the share of its op time that is recomputed; without that measurement, or when the
        device's op time is larger (CUDA: the CPU only launches), the ops' measured time
        scaled to the uninstrumented step."""
        t = self.trace
        durs = t.op_dur_us[start_op:stop]
        if cached is not None:
            durs = durs[~cached[: stop - start_op]]
        op_us = float(durs.sum()) * self.time_scale
        unit = self.units[int(t.call_unit[c])]
        plain_ms, calls = unit.get("fwd_plain_ms"), unit.get("fwd_plain_calls")
        all_us = float(self._cum_dur[end_op] - self._cum_dur[start_op])
        if plain_ms and calls and all_us > 0:
            plain_us = plain_ms * 1000.0 / calls * float(durs.sum()) / all_us
            return max(plain_us, op_us) if t.device_type == "cuda" else plain_us
        return op_us

    def _offload_us(self, r: _Region) -> float:
        t = self.trace
        moved = 0
        for i, s in zip(r.saves, t.sv_storage[r.saves]):
            nbytes = int(t.st_bytes[s]) if t.on_device[s] else 0
            moved += nbytes * (2 if t.sv_unpack[i] >= 0 else 1)
        return moved / self.pcie_bytes_per_s * 1e6

    def _categories(self, free: np.ndarray, held: np.ndarray) -> np.ndarray:
        t = self.trace
        base = t.st_category
        cat = np.where(held, _ACT, _TMP).astype(np.int8)
        # made inside a module in a forward, live at a backward start, freed in that backward
        in_module_fwd = (t.st_call >= 0) & (t.st_alloc_phase == Phase.FORWARD) & (t.st_alloc >= 0)
        for b, e in t.backward_segments:
            cat[in_module_fwd & (t.st_alloc < b) & (free > b) & (free < e)] = _ACT
        fixed = (base == Category.PARAMETER) | (base == Category.GRADIENT) | (base == Category.OPTIMIZER_STATE) | (base == Category.INPUT)
        cat[fixed] = base[fixed]
        return cat

    def _activation(self, free: np.ndarray, cat: np.ndarray) -> int:
        t = self.trace
        best = 0
        fwd_made = (t.st_alloc >= 0) & (t.st_alloc_phase == Phase.FORWARD) & t.on_device & (cat == _ACT)
        for b, _e in t.backward_segments:
            sel = fwd_made & (t.st_alloc < b) & (free > b)
            best = max(best, int(t.st_bytes[sel].sum()))
        return best


def simulate(profile: Profile, actions: Iterable[Action], **kwargs) -> SimResult:
    """One-shot helper: ``simulate(profile, [Action("blocks.0", "checkpoint")])``."""
    return Simulator(profile).simulate(actions, **kwargs)
