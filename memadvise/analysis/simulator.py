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
  of the kept ops (the action's op selectors: a preset or a per-op list, each op
  addressed as its k-th call in the unit's forward) are cached in forward and handed to
  the recompute instead of being recomputed; cached outputs past the early-stop point
  stay until the frame dies.
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

from memadvise.analysis.units import TraceIndex, call_op_selectors, selector_mask
from memadvise.schema.actions import OFFLOAD, SELECTIVE, Action, display_unit
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
_UNT = int(Category.UNTRACKED)


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
    q_untracked: np.ndarray = None  # type: ignore[assignment]

    @classmethod
    def of(cls, alloc, free, nbytes, cat, hold_sids, hold_free, q, us, q_scratch=None, q_untracked=None) -> "_Effect":
        def cat_(xs, dtype):
            return np.concatenate([np.asarray(x, dtype=dtype) for x in xs]) if xs else np.zeros(0, dtype=dtype)

        q = np.asarray(q, dtype=np.float64)
        ws = np.zeros(len(q), dtype=np.int64) if q_scratch is None else np.asarray(q_scratch, dtype=np.int64)
        un = np.zeros(len(q), dtype=np.int64) if q_untracked is None else np.asarray(q_untracked, dtype=np.int64)
        return cls(cat_(alloc, np.float64), cat_(free, np.float64), cat_(nbytes, np.int64), cat_(cat, np.int8),
                   cat_(hold_sids, np.int64), cat_(hold_free, np.float64), q, float(us), ws, un)


@dataclass
class Replacement:
    """A change that is not a set of unit actions (a compiled region, built by
    ``analysis.compile_plans``): forward saves dropped (their storages die naturally),
    storages that do not exist under the change (``erase``), storages and time added
    (``effect``), bytes held for backward that the added storages stand for, the
    recorded ops whose scratch does not happen under the change (``no_scratch``), and
    storages made at another clock (``moved``, ``moved_alloc``: a compiled backward
    makes the gradients at its own kernels)."""

    saves: np.ndarray
    erase: np.ndarray
    effect: "_Effect"
    activation_bytes: int
    no_scratch: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    moved: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # storages made elsewhere
    moved_alloc: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))  # ... at these clocks


class Simulator:
    """Predict the step of ``profile`` under sets of actions. Cheap to call repeatedly."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.trace = Trace(profile)
        self.unit_index = profile.unit_index()
        self.units = profile.records.units
        cal = profile.doc.get("calibration") or {}
        self.checkpoint_call_ms = float(cal.get("checkpoint_call_ms", DEFAULT_CHECKPOINT_CALL_MS))
        self.selective_op_us = float(cal.get("selective_op_us", DEFAULT_SELECTIVE_OP_US))
        self.pcie_bytes_per_s = float(cal.get("pcie_bytes_per_s", DEFAULT_PCIE_BYTES_PER_S))
        self.base_step_s = profile.records.summary.step_time_s
        self.time_scale = float(profile.trace.get("time_scale", 1.0))
        t = self.trace
        self._fwd_saves = np.nonzero(t.forward_saves)[0]
        self._valid_saves = t.sv_storage >= 0
        self._cum_dur = np.concatenate(([0.0], np.cumsum(t.op_dur_us)))
        self._baseline: SimResult | None = None
        self._region_cache: dict[int, _Region] = {}
        self._effect_cache: dict[tuple, _Effect] = {}
        self._op_clock_f = t.op_clock.astype(np.float64)
        self._fwd_saved_storages = np.unique(t.sv_storage[t.forward_saves])
        self.index = TraceIndex(t)
        self._selectors: dict[int, tuple[list[str], np.ndarray]] = {}
        self._time_cache: dict[tuple, float] = {}
        self._action_us: dict[tuple, float] = {}
        self._selector_tables: dict[int, dict] = {}
        self._fwd_save_count: np.ndarray | None = None  # forward saves per storage (recomputed_ops)

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
            if regions:
                dropped[np.concatenate([r.saves for r in regions])] = True
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
        if effects:
            hold_sids = np.concatenate([e.hold_sids for e in effects])
            if len(hold_sids):
                np.maximum.at(free, hold_sids, np.concatenate([e.hold_free for e in effects]))
                held[hold_sids] = True

        st_alloc = t.st_alloc.astype(np.float64)
        if replace is not None and len(replace.moved):
            st_alloc[replace.moved] = replace.moved_alloc
        if replace is not None and len(replace.erase):
            free[replace.erase] = st_alloc[replace.erase]  # live on [alloc, alloc): never
        extra_alloc = [e.alloc for e in effects]
        extra_free = [e.free for e in effects]
        extra_bytes = [e.nbytes for e in effects]
        extra_cat = [e.cat for e in effects]
        query = [self._op_clock_f] + [e.q for e in effects]
        n_rc = sum(len(e.q) for e in effects)  # recompute ops: in backward
        # an added storage's query takes the phase of the recorded op it lands after
        # (recompute: backward; a compiled forward's buffers: forward)
        q_added = np.concatenate([e.q for e in effects]) if effects else np.zeros(0)
        at_op = np.clip(np.searchsorted(self._op_clock_f, q_added, side="right") - 1, 0, max(0, len(t.op_phase) - 1))
        added_phase = (t.op_phase[at_op].astype(np.int8) if len(t.op_phase)
                       else np.full(n_rc, int(Phase.BACKWARD), dtype=np.int8))
        query_phase = [t.op_phase, added_phase]
        query_rc = [np.zeros(len(t.op_clock), dtype=bool), np.ones(n_rc, dtype=bool)]
        op_scratch = t.op_scratch
        if replace is not None and len(replace.no_scratch):
            op_scratch = op_scratch.copy()
            op_scratch[replace.no_scratch] = 0
        query_ws = [op_scratch] + [e.q_scratch for e in effects]
        query_un = [t.op_untracked] + [e.q_untracked for e in effects]
        extra_us = float(sum(e.us for e in effects))

        # categories under the plan (same rules as the measurement)
        cat = self._categories(free, held)
        on = t.on_device
        alloc_all = np.concatenate([st_alloc[on]] + extra_alloc)
        free_all = np.concatenate([free[on]] + extra_free)
        bytes_all = np.concatenate([t.st_bytes[on]] + extra_bytes)
        cat_all = np.concatenate([cat[on]] + extra_cat)
        q = np.concatenate(query)
        q_phase = np.concatenate(query_phase)
        q_rc = np.concatenate(query_rc)
        q_ws = np.concatenate(query_ws)
        q_un = np.concatenate(query_un)
        order = np.argsort(q, kind="stable")
        q, q_phase, q_rc, q_ws, q_un = q[order], q_phase[order], q_rc[order], q_ws[order], q_un[order]

        # measured extras per op (allocator.py): scratch inside it, bytes no tensor holds
        total = live_bytes(q, alloc_all, free_all, bytes_all) + q_ws + q_un
        k = int(np.argmax(total)) if len(total) else 0
        by_peak = np.zeros(N_CATEGORIES, dtype=np.int64)
        if len(q):
            live = (alloc_all <= q[k]) & (free_all > q[k])  # live_bytes' rule, at one clock
            by_peak += np.bincount(cat_all[live].astype(np.int64), weights=bytes_all[live],
                                   minlength=N_CATEGORIES)[:N_CATEGORIES].astype(np.int64)
            by_peak[_TMP] += q_ws[k]
            by_peak[_UNT] += q_un[k]
        activation = self._activation(free, cat) + (replace.activation_bytes if replace is not None else 0)
        step_s = self.base_step_s + extra_us / 1e6
        peak_op = None
        if len(q) and not q_rc[k]:
            peak_op = t.op_name_str(int(order[k]))
        tl = None
        if timeline:
            from memadvise.schema.timeline import live_by_category

            by_cat = live_by_category(q, alloc_all, free_all, bytes_all, cat_all, N_CATEGORIES)
            by_cat[:, _UNT] += q_un
            tl = Timeline(clock=q, phase=q_phase, by_category=by_cat, recompute=q_rc)
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
        actions = list(actions)
        if len(actions) == 1:  # one action: no nesting to check (the solver's options)
            a = actions[0]
            key = (a.unit, a.action, a.kept())
            us = self._action_us.get(key)
            if us is None:
                us = self._action_us[key] = float(sum(self._region_us(r) for r in self._regions(actions)))
            return us
        return float(sum(self._region_us(r) for r in self._regions(actions)))

    def recomputed_ops(self, actions: Iterable[Action]) -> list[dict]:
        """What ``actions`` recompute, grouped by op: ``{"op", "calls", "us", "freed_bytes"}``
        per aten op, the most freed bytes first. ``us``: the op's share of the predicted
        recompute time (the time term of ``simulate``, without the fixed costs).
        ``freed_bytes``: bytes of its outputs that autograd saved inside the acted call
        and that are no longer held from forward to backward (not kept, saved by nothing
        outside the call)."""
        t = self.trace
        if self._fwd_save_count is None:
            self._fwd_save_count = np.bincount(t.sv_storage[self._fwd_saves], minlength=len(t.st_bytes))
        out: dict[str, list] = {}
        for r in self._regions(list(actions)):
            if r.action.action == OFFLOAD or r.trigger is None:
                continue
            c = r.call
            start_op, end_op = int(t.call_start_op[c]), int(t.call_end_op[c])
            stop = r.stop_op
            cached = self._cached_mask(r, start_op, end_op)
            rc = np.ones(stop - start_op, dtype=bool) if cached is None else ~cached[: stop - start_op]
            total_us = self._recompute_us(c, start_op, end_op, stop, cached)
            durs = t.op_dur_us[start_op:stop]
            dur_rc = float(durs[rc].sum())
            made = self.index.made_by_ops(start_op, stop)
            sids, counts = np.unique(t.sv_storage[r.saves], return_counts=True)
            inside = np.zeros(len(made), dtype=np.int64)
            if len(sids):
                pos = np.minimum(np.searchsorted(sids, made), len(sids) - 1)
                inside = np.where(sids[pos] == made, counts[pos], 0)
            freed_sid = (inside > 0) & (inside == self._fwd_save_count[made]) & t.on_device[made]
            freed_by_op = np.zeros(stop - start_op, dtype=np.int64)
            np.add.at(freed_by_op, t.st_op[made[freed_sid]] - start_op, t.st_bytes[made[freed_sid]])
            names, _ks = self.call_selectors(c)
            for j in np.nonzero(rc)[0]:
                row = out.setdefault(names[j], [0, 0.0, 0])
                row[0] += 1
                row[1] += total_us * float(durs[j]) / dur_rc if dur_rc > 0 else 0.0
                row[2] += int(freed_by_op[j])
        rows = [{"op": op, "calls": n, "us": us, "freed_bytes": fb} for op, (n, us, fb) in out.items()]
        return sorted(rows, key=lambda x: (-x["freed_bytes"], -x["us"], x["op"]))

    def call_selectors(self, c: int) -> tuple[list[str], np.ndarray]:
        """Op names and per-op call counts (k; -1: never seen by the policy) of call ``c``."""
        out = self._selectors.get(c)
        if out is None:
            out = self._selectors[c] = call_op_selectors(self.trace, c)
        return out

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
            saves = self.index.forward_saves_of(c)
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
        key = (r.call, r.action.action, r.action.kept())
        e = self._effect_cache.get(key)
        if e is None:
            e = self._effect_cache[key] = self._compute_effect(r)
        return e

    def _region_us(self, r: _Region) -> float:
        key = (r.call, r.action.action, r.action.kept())
        us = self._time_cache.get(key)
        if us is None:
            t = self.trace
            start_op, end_op = int(t.call_start_op[r.call]), int(t.call_end_op[r.call])
            us = self._time_cache[key] = self._time_us(r, self._cached_mask(r, start_op, end_op))
        return us

    def _time_us(self, r: _Region, cached_ops: np.ndarray | None) -> float:
        """Extra step time of acting on one call: offload's transfers, or checkpoint's fixed
        cost, selective's caching mode over the forward and the recompute, and the
        recomputed ops' time."""
        if r.action.action == OFFLOAD:
            return self._offload_us(r)
        t = self.trace
        c = r.call
        start_op, end_op = int(t.call_start_op[c]), int(t.call_end_op[c])
        us = self.checkpoint_call_ms * 1000.0
        if cached_ops is not None and cached_ops.any():
            us += self.selective_op_us * (end_op - start_op)  # the caching mode over the forward
        if r.trigger is None:
            return us
        if cached_ops is not None:
            us += self.selective_op_us * (r.stop_op - start_op)
        return us + self._recompute_us(c, start_op, end_op, r.stop_op, cached_ops)

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
            us = self._time_us(r, None)
            for i in r.saves:
                s = t.sv_storage[i]
                if t.sv_unpack[i] >= 0 and t.on_device[s]:  # back on the device for its node
                    alloc.append(np.asarray([float(t.sv_unpack[i])]))
                    free_.append(np.asarray([float(t.sv_release[i])]))
                    nbytes.append(np.asarray([int(t.st_bytes[s])]))
                    cat.append(np.asarray([_ACT]))
            return _Effect.of(alloc, free_, nbytes, cat, hold_sids, hold_free, q, us)
        cached_ops = self._cached_mask(r, start_op, end_op)
        us = self._time_us(r, cached_ops)
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
        q_untracked = t.op_untracked[start_op:stop][rc_mask]  # as when the op first ran
        made = self.index.made_by_ops(start_op, stop)
        if len(made):
            # per storage: the release of its slots saved inside this call
            rel_made = np.full(len(made), -1.0)
            if len(r.saves):
                sids, inv = np.unique(t.sv_storage[r.saves], return_inverse=True)
                rel_of = np.full(len(sids), -1.0)
                np.maximum.at(rel_of, inv, t.sv_release[r.saves].astype(np.float64))
                pos = np.minimum(np.searchsorted(sids, made), len(sids) - 1)
                rel_made = np.where(sids[pos] == made, rel_of[pos], -1.0)
            saved_here = rel_made >= 0
            nat_rc = np.where(t.st_nat[made] < r.last_pack, v(t.st_nat[made].astype(np.float64)), v(float(r.last_pack)))
            rc_free = np.where(saved_here, rel_made, nat_rc)
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
        if rng_on_device:  # fork_rng stashes the state again during recompute
            alloc.append(np.asarray([v(start)]))
            free_.append(np.asarray([v(float(r.last_pack))]))
            nbytes.append(np.asarray([CPU_RNG_STATE_BYTES]))
            cat.append(np.asarray([_TMP]))
        return _Effect.of(alloc, free_, nbytes, cat, hold_sids, hold_free, q, us, q_scratch, q_untracked)

    def _cached_mask(self, r: _Region, start_op: int, end_op: int) -> np.ndarray | None:
        if r.action.action != SELECTIVE:
            return None
        names, ks = self.call_selectors(r.call)
        return selector_mask(names, ks, r.action.kept(), self._selector_tables.setdefault(r.call, {}))

    def _hold_cached(self, r: _Region, cached: np.ndarray, start_op: int, hold_sids: list, hold_free: list,
                     recompute_free: int | None) -> None:
        """Cached outputs past the early stop (or never consumed) live until the frame dies."""
        idx = np.nonzero(cached)[0] + start_op
        if recompute_free is not None:
            idx = idx[idx >= recompute_free]
        if not len(idx):
            return
        made = self.index.made_by(idx)
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
        plain_ms, calls = unit.fwd_plain_ms, unit.fwd_plain_calls
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
