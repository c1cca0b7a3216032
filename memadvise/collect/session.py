"""Run a user's unmodified training script in-process, for warmup + timing + recorded steps.

The script runs as ``python SCRIPT ARGS`` would (same ``sys.argv``, ``__name__ ==
"__main__"``, the script's folder first on ``sys.path``). Step boundaries come from
PyTorch's global optimizer step hooks, or from ``memadvise.step()`` for scripts without
a ``torch.optim`` optimizer. The run is, in order:

1. ``warmup`` steps, uninstrumented and discarded (lazy init, optimizer state);
2. ``timing_steps`` uninstrumented steps whose wall time is the step time we report;
3. ``steps`` recorded steps under the ``Recorder``;

then the script is stopped by an exception raised from the last step's boundary.
"""

from __future__ import annotations

import os
import re
import runpy
import signal
import sys
import threading
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter_ns
from typing import Any

import torch

from memadvise._errors import InputFileError, ScriptError
from memadvise.collect.host_memory import minor_faults
from memadvise.collect.recorder import Recorder
from memadvise.collect.root import RootModel, ScriptVariable, find_root_model, find_variable


class _StopScript(BaseException):
    """Raised from the last recorded step's boundary to end the script cleanly."""


class _Timeout(BaseException):
    """Raised in the main thread when ``--timeout`` expires."""


_ACTIVE: "ProfileSession | None" = None


def step() -> None:
    """Mark the end of a training step, for scripts that use no ``torch.optim`` optimizer.

    A no-op when the script is not run under ``memadvise profile``.

    Example::

        for batch in data:
            loss = model(batch).sum()
            loss.backward()
            my_update(model)
            memadvise.step()
    """
    session = _ACTIVE
    if session is not None and not session.uses_optimizer:
        session.boundary(None)


@dataclass
class RawRun:
    """What a finished session hands to the profile builder."""

    script: Path
    args: list[str]
    warmup: int
    steps: int
    timing_steps: int
    recorder: Recorder
    root: RootModel | None
    timing_wall_ns: list[int]
    device: torch.device
    optimizer: Any
    optimizer_variable: ScriptVariable | None = None
    plain_forward_ns: dict = field(default_factory=dict)  # id(module) → (total ns, calls) in one plain step
    plain_step_ns: int | None = None  # that step's wall time (module hooks on)
    timing_minor_faults: list[int] = field(default_factory=list)  # per timing step; empty where not measurable
    calibration: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    root_kwarg_shapes: list = field(default_factory=list)  # [dtype, shape] of the root's tensor keyword inputs


class LineLog:
    """The lines executed in the script's own frames until the first step boundary: which
    branch built, moved and wrapped the model, so that ``apply`` puts the plan on the path
    that ran (an ``if ddp:`` that did not run is skipped). A ``sys.settrace`` function that
    traces only the script's frames; it is removed at the first boundary, so only the
    discarded warm-up step pays for it. Not installed under another tracer (a debugger,
    coverage): ``executed`` is then None and ``apply`` reads the script alone."""

    def __init__(self, script: Path) -> None:
        self.path = os.path.abspath(script)
        self.lines: dict[tuple[str, int], set[int]] = {}  # (function, first line) → lines run
        self._is_script: dict[str, bool] = {}
        self.active = False

    def start(self) -> None:
        if sys.gettrace() is not None:
            return
        sys.settrace(self._call)
        self.active = True

    def stop(self) -> None:
        if self.active:
            sys.settrace(None)
            self.active = False

    def _call(self, frame: Any, event: str, arg: Any) -> Any:
        name = frame.f_code.co_filename
        mine = self._is_script.get(name)
        if mine is None:
            mine = self._is_script[name] = os.path.abspath(name) == self.path
        if not mine:
            return None
        code = frame.f_code
        lines = self.lines.setdefault((code.co_name, code.co_firstlineno), set())
        lines.add(frame.f_lineno)

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "line":
                lines.add(frame.f_lineno)
            return local

        return local

    def executed(self) -> dict[tuple[str, int], set[int]] | None:
        return self.lines if self.lines else None


class ProfileSession:
    def __init__(
        self,
        script: str | os.PathLike,
        args: list[str],
        *,
        warmup: int = 1,
        steps: int = 3,
        timing_steps: int = 3,
        timeout: float | None = None,
        progress: Any = None,
    ) -> None:
        self.script = Path(script)
        self.args = list(args)
        self.warmup = warmup
        self.steps = steps
        self.timing_steps = timing_steps
        self.timeout = timeout
        self.progress = progress
        self.total = warmup + timing_steps + steps
        self.done = 0
        self.uses_optimizer = False
        self.primary_optimizer: Any = None
        self.recorder: Recorder | None = None
        self.root: RootModel | None = None
        self.optimizer_variable: ScriptVariable | None = None
        self.plain_timer: PlainTimer | None = None
        self.plain_timed_wall_ns: int | None = None
        self.device: torch.device | None = None
        self.timing_wall_ns: list[int] = []
        self.timing_minor_faults: list[int] = []
        self._last_faults = minor_faults()
        self._last = 0
        self._step_overhead_start = 0
        self._finished = False
        self._hooks: list[Any] = []
        self.line_log = LineLog(self.script)
        self.root_kwarg_shapes: list = []

    # ------------------------------------------------------------------ boundaries
    def _pre_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.primary_optimizer is None:
            self.primary_optimizer = optimizer
            self.uses_optimizer = True
        if self.recorder is not None and self.recorder._active:
            self.recorder.optimizer_begin(optimizer)

    def _post_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        if self.recorder is not None and self.recorder._active:
            self.recorder.optimizer_end(optimizer)
        if optimizer is self.primary_optimizer:
            self.boundary(optimizer)

    def boundary(self, optimizer: Any) -> None:
        now = perf_counter_ns()
        wall = now - self._last
        faults = minor_faults()
        step_faults = None if faults is None or self._last_faults is None else faults - self._last_faults
        self.done += 1
        rec = self.recorder
        if self.root is None:
            self.line_log.stop()
            self.root = find_root_model(self.script, optimizer, executed=self.line_log.executed())
            if self.root is not None:  # keyword inputs (model(input_ids=..., labels=...)), for fit
                self._hooks.append(self.root.module.register_forward_pre_hook(self._root_kwargs, with_kwargs=True))
            if optimizer is not None:
                self.optimizer_variable = find_variable(self.script, optimizer)
        if self.device is None:
            self.device = _training_device(optimizer, self.root)
        if rec is not None and rec._active:
            mark = rec.end_step(wall)
            mark.overhead_ns = rec.overhead_ns - self._step_overhead_start
        elif self.done > self.warmup:
            if self.plain_timer is not None and self.plain_timer.active:
                self.plain_timer.stop()
                self.plain_timed_wall_ns = wall
            else:
                self.timing_wall_ns.append(wall)
            if step_faults is not None:  # module hooks map no pages: the plain-timed step counts too
                self.timing_minor_faults.append(step_faults)
        if self.progress is not None:
            self.progress(self.done, self.total)
        if self.done >= self.total:
            if rec is not None:
                rec.stop()
            self._finished = True
            raise _StopScript()
        if self.timing_steps and self.done == self.warmup + self.timing_steps - 1:
            # the last timing step: module forward times without the recorder
            self.plain_timer = PlainTimer()
            self.plain_timer.start()
        if self.done >= self.warmup + self.timing_steps:
            if rec is None:
                rec = self.recorder = Recorder(self.device, timing=_timing_kind(self.device))
                if optimizer is not None:
                    rec.optimizer_end(optimizer)  # registers existing optimizer state
                    rec.optimizer_phase = False
                rec.start()
            rec.begin_step(self.done)
            self._step_overhead_start = rec.overhead_ns
        self._last = perf_counter_ns()
        self._last_faults = minor_faults()

    def _root_kwargs(self, module: Any, args: Any, kwargs: Any) -> None:
        self.root_kwarg_shapes = [[str(v.dtype).replace("torch.", ""), list(v.shape)]
                                  for _k, v in sorted((kwargs or {}).items()) if isinstance(v, torch.Tensor)]

    # ------------------------------------------------------------------ running
    def run(self) -> RawRun:
        global _ACTIVE
        script = self.script
        if not script.exists():
            raise InputFileError(f"script {str(script)!r} does not exist")
        if not script.is_file():
            raise InputFileError(f"script {str(script)!r} is not a file")
        try:
            source = script.read_bytes()
            compile(source, str(script), "exec")
        except SyntaxError as exc:
            raise ScriptError(
                f"{script.name}:{exc.lineno}: syntax error: {exc.msg}"
            ) from None
        except (OSError, ValueError) as exc:
            raise InputFileError(f"cannot read script {str(script)!r}: {exc}") from None

        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        saved_argv, saved_path = sys.argv[:], sys.path[:]
        old_handler = None
        use_alarm = self.timeout is not None and threading.current_thread() is threading.main_thread()
        _ACTIVE = self
        self._hooks = [
            register_optimizer_step_pre_hook(self._pre_step),
            register_optimizer_step_post_hook(self._post_step),
        ]
        sys.argv = [str(script)] + self.args
        sys.path.insert(0, str(script.resolve().parent))
        if self.warmup + self.timing_steps == 0:
            self.device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
            self.recorder = Recorder(self.device, timing=_timing_kind(self.device))
            self.recorder.start()
            self.recorder.begin_step(0)
        alarm = None
        if use_alarm:
            alarm = _MainThreadAlarm(float(self.timeout))
            old_handler = signal.signal(signal.SIGALRM, alarm.handler)
            alarm.start()
        self._last = perf_counter_ns()
        self._last_faults = minor_faults()
        failure: BaseException | None = None
        if self.warmup > 0:  # the tracer's cost lands on the discarded warm-up step only
            self.line_log.start()
        try:
            runpy.run_path(str(script), run_name="__main__")
        except _StopScript:
            pass
        except _Timeout:
            failure = ScriptError(
                f"the script timed out after {self.timeout:g} s "
                f"({self.done} of {self.total} steps done); raise --timeout or lower --steps"
            )
        except SystemExit as exc:
            failure = ScriptError(
                f"the script exited (sys.exit({exc.code!r})) after {self.done} of {self.total} "
                f"steps (warmup {self.warmup} + timing {self.timing_steps} + recorded {self.steps}); "
                "lower --warmup/--steps or let the script run longer"
            )
        except KeyboardInterrupt:
            failure = ScriptError(f"interrupted after {self.done} of {self.total} steps")
        except BaseException as exc:  # the script's own error: show it, then stop
            failure = ScriptError(_describe_script_error(exc, script))
            failure.details = script_traceback(exc)
        finally:
            self.line_log.stop()
            if alarm is not None:
                alarm.cancel()
                signal.signal(signal.SIGALRM, old_handler)
            _ACTIVE = None
            for h in self._hooks:
                h.remove()
            if self.recorder is not None:
                self.recorder.stop()
            if self.plain_timer is not None:
                self.plain_timer.stop()
            sys.argv, sys.path[:] = saved_argv, saved_path
        if failure is not None:
            raise failure
        if not self._finished:
            if self.done == 0:
                raise ScriptError(
                    "the script finished without completing a training step: memadvise ends a "
                    "step at optimizer.step(); a script without a torch.optim optimizer must "
                    "call memadvise.step() at the end of each step"
                )
            raise ScriptError(
                f"the script finished after {self.done} of {self.total} steps "
                f"(warmup {self.warmup} + timing {self.timing_steps} + recorded {self.steps}); "
                "lower --warmup/--steps or let the script run longer"
            )
        assert self.recorder is not None and self.device is not None
        return RawRun(
            script=script,
            args=self.args,
            warmup=self.warmup,
            steps=self.steps,
            timing_steps=self.timing_steps,
            recorder=self.recorder,
            root=self.root,
            timing_wall_ns=self.timing_wall_ns,
            device=self.device,
            optimizer=self.primary_optimizer,
            optimizer_variable=self.optimizer_variable,
            plain_forward_ns=self.plain_timer.totals if self.plain_timer is not None else {},
            plain_step_ns=self.plain_timed_wall_ns,
            timing_minor_faults=self.timing_minor_faults,
            root_kwarg_shapes=self.root_kwarg_shapes,
        )


class PlainTimer:
    """Wall time of every module's forward during one uninstrumented step: what re-running
    it costs (its ops and its Python), for the recompute-time model."""

    def __init__(self) -> None:
        self.totals: dict[int, tuple[int, int]] = {}
        self._stack: list[int] = []
        self._hooks: list[Any] = []
        self.active = False

    def start(self) -> None:
        self._hooks = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._pre),
            torch.nn.modules.module.register_module_forward_hook(self._post, always_call=True),
        ]
        self.active = True

    def stop(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []
        self.active = False

    def _pre(self, module: Any, args: Any) -> None:
        self._stack.append(perf_counter_ns())

    def _post(self, module: Any, args: Any, output: Any) -> None:
        if not self._stack:
            return
        elapsed = perf_counter_ns() - self._stack.pop()
        total, calls = self.totals.get(id(module), (0, 0))
        self.totals[id(module)] = (total + elapsed, calls + 1)


class _MainThreadAlarm:
    """SIGALRM to the main thread only, after ``seconds``. ``setitimer`` signals the
    process, and the kernel may hand that to any thread: one of gloo's I/O threads, whose
    interrupted socket call then aborts the process, and the script's main thread (in
    ``time.sleep``, say) never sees its timeout. A timer thread aiming ``pthread_kill`` at
    the main thread interrupts only the script."""

    def __init__(self, seconds: float) -> None:
        self._target = threading.main_thread().ident
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True
        self.armed = False

    def start(self) -> None:
        self.armed = True
        self._timer.start()

    def _fire(self) -> None:
        if self.armed and self._target is not None:
            signal.pthread_kill(self._target, signal.SIGALRM)

    def handler(self, signum: int, frame: Any) -> None:
        if self.armed:  # a signal that lands after cancel() is ignored
            raise _Timeout()

    def cancel(self) -> None:
        """Disarm; once this returns no SIGALRM of ours is still to come."""
        self.armed = False
        self._timer.cancel()
        self._timer.join()


def _timing_kind(device: torch.device) -> str:
    return "cuda" if device.type == "cuda" else "wall"


def _training_device(optimizer: Any, root: RootModel | None) -> torch.device:
    tensors: list[torch.Tensor] = []
    if optimizer is not None:
        tensors = [p for g in optimizer.param_groups for p in g["params"]]
    elif root is not None:
        tensors = list(root.module.parameters())
    for t in tensors:
        return t.device
    return torch.device("cpu")


_OUR_FILES = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))), os.path.abspath(runpy.__file__))


def _user_frames(tb: Any) -> traceback.StackSummary:
    """The traceback's frames without memadvise's and runpy's: the script's and what it called."""
    frames = traceback.extract_tb(tb)
    return traceback.StackSummary.from_list(
        [fs for fs in frames if not (fs.filename.startswith("<frozen runpy")
                                     or os.path.abspath(fs.filename).startswith(_OUR_FILES))])


def script_traceback(exc: BaseException) -> str:
    """The script's exception as Python prints it, memadvise's frames left out."""
    lines = ["the script's traceback (most recent call last; memadvise's frames left out):\n"]
    lines += traceback.format_list(_user_frames(exc.__traceback__))
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines).rstrip("\n")


def _describe_script_error(exc: BaseException, script: Path) -> str:
    """One line: the script's exception and where it was raised: the script's line, and
    the line that failed when that is elsewhere (in code the script exec'd, or a library)."""
    where = ""
    script_path = str(script.resolve())
    frames = _user_frames(exc.__traceback__)
    mine = next((fs for fs in reversed(frames) if os.path.abspath(fs.filename) == script_path), None)
    last = frames[-1] if frames else None
    if mine is not None:
        where = f" ({script.name}:{mine.lineno}"
        if last is not None and last is not mine:
            execd = re.search(r"exec\(\s*open\(\s*(['\"])([^'\"]+)\1", mine.line or "")
            what = (f"{os.path.basename(execd.group(2))}:{last.lineno}, which it exec'd" if execd and last.filename == "<string>"
                    else f"line {last.lineno} of the code it exec'd" if last.filename.startswith("<")
                    else f"{os.path.basename(last.filename)}:{last.lineno}")
            where += f", failing at {what}"
        where += ")"
    elif last is not None:
        where = f" ({os.path.basename(last.filename)}:{last.lineno})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    sep = ": " if message else ""
    return f"the script raised {type(exc).__name__}{sep}{message}{where}"
