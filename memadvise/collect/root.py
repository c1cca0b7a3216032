"""Find the root model: the module whose parameters are being trained, and its variable.

Called from the first step boundary, which runs inside the script's own call to
``optimizer.step()`` (or ``memadvise.step()``): the script's frames are on the stack, so
the variable that holds the model, and the function it lives in, can be read off them.
The patch of ``memadvise apply`` is inserted after that variable's assignment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class RootModel:
    module: torch.nn.Module
    expression: str | None  # how the script names it: "model", "self.model", "trainer.net"
    file: str | None  # the script file whose frame holds that name
    function: str | None  # "<module>" for a global
    frame_line: int | None  # the line that frame was executing (the training loop)
    trained_params: int  # parameters of the module that the optimizer updates
    # the script's frames on the stack at the first step, innermost first: function,
    # first_line (of its code), line (executing), expression (its name for the model, or
    # None), parameter (that name is one of the function's parameters), executed_lines
    # (lines it ran before the first step; None when not traced)
    frames: list[dict] = field(default_factory=list)


def _trained_params(module: torch.nn.Module, param_ids: set[int] | None) -> int:
    if param_ids is None:
        return sum(1 for p in module.parameters() if p.requires_grad)
    return sum(1 for p in module.parameters() if id(p) in param_ids)


def _module_candidates(frame: Any) -> list[tuple[str, torch.nn.Module]]:
    out: list[tuple[str, torch.nn.Module]] = []
    scopes = [frame.f_locals]
    if frame.f_code.co_name == "<module>" or frame.f_globals is not frame.f_locals:
        scopes.append(frame.f_globals)
    seen: set[int] = set()
    for scope in scopes:
        for name, value in list(scope.items()):
            if name.startswith("__"):
                continue
            if isinstance(value, torch.nn.Module) and id(value) not in seen:
                seen.add(id(value))
                out.append((name, value))
            elif not isinstance(value, (type, type(os))) and hasattr(value, "__dict__"):
                # one level into plain objects: self.model, trainer.net
                try:
                    attrs = vars(value)
                except TypeError:
                    continue
                for attr, inner in list(attrs.items()):
                    if isinstance(inner, torch.nn.Module) and id(inner) not in seen:
                        seen.add(id(inner))
                        out.append((f"{name}.{attr}", inner))
    return out


def _drop_locals_snapshot(frame: Any) -> None:
    """Before Python 3.13, reading ``frame.f_locals`` of a function frame caches a dict on
    the frame holding every local (the script's batch, its loss) until the function
    returns: memory the script would not hold. Empty that snapshot again. From 3.13
    (PEP 667) ``f_locals`` is a write-through proxy holding nothing: leave it alone."""
    if sys.version_info >= (3, 13) or frame.f_code.co_name == "<module>":
        return
    try:
        frame.f_locals.clear()
    except Exception:  # a frame whose snapshot cannot be emptied: it only holds what the script holds
        pass


# the attribute through which a wrapper holds the model: DDP and DataParallel, FSDP (1),
# torch.compile's OptimizedModule
_WRAPPED_AS = ("module", "_fsdp_wrapped_module", "_orig_mod")


def _parameter_names(code: Any) -> set[str]:
    n = code.co_argcount + code.co_kwonlyargcount
    return set(code.co_varnames[:n])


def find_root_model(script: Path, optimizer: Any, executed: dict | None = None) -> RootModel | None:
    """The module with the most trained parameters reachable from the script's frames.

    Ties go to the outermost module (the one that contains the others). Falls back to a
    scan of all live modules when the script's frames hold none (the model lives inside
    a library object), in which case no expression is known.
    """
    param_ids: set[int] | None = None
    if optimizer is not None:
        param_ids = {id(p) for g in optimizer.param_groups for p in g["params"]}
    script_path = os.path.abspath(script)
    best: tuple[int, int, int] | None = None
    found: RootModel | None = None
    frame = sys._getframe(1)
    depth = 0
    seen_frames: list[tuple[Any, list[tuple[str, torch.nn.Module]]]] = []
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename) == script_path:
            candidates = _module_candidates(frame)
            _drop_locals_snapshot(frame)
            seen_frames.append((frame, candidates))
            for name, module in candidates:
                n = _trained_params(module, param_ids)
                if n == 0:
                    continue
                size = sum(1 for _ in module.modules())
                # more trained params first, then the larger tree, then the innermost frame
                key = (n, size, -depth)
                if best is None or key > best:
                    best = key
                    found = RootModel(
                        module=module,
                        expression=name,
                        file=script_path,
                        function=frame.f_code.co_name,
                        frame_line=frame.f_lineno,
                        trained_params=n,
                    )
        frame = frame.f_back
        depth += 1
    if found is not None:
        # what each frame calls the model, or the model inside its wrappers (HF's Trainer
        # wraps the script's `model` in DDP itself): the name, and the wrapper path
        inner: list[tuple[str, torch.nn.Module]] = [("", found.module)]
        while len(inner) < 4:
            attr = next((a for a in _WRAPPED_AS if isinstance(getattr(inner[-1][1], a, None), torch.nn.Module)), None)
            if attr is None:
                break
            path = f"{inner[-1][0]}.{attr}" if inner[-1][0] else attr
            inner.append((path, getattr(inner[-1][1], attr)))
        for fr, candidates in seen_frames:
            code = fr.f_code
            name, prefix = None, ""
            for path, module in inner:
                name = next((n for n, m in candidates if m is module and "." not in n),
                            next((n for n, m in candidates if m is module and n.startswith("self.")), None))
                if name is not None:
                    prefix = path
                    break
            lines = (executed or {}).get((code.co_name, code.co_firstlineno)) if executed is not None else None
            found.frames.append({
                "function": code.co_name,
                "first_line": code.co_firstlineno,
                "line": fr.f_lineno,
                "expression": name,
                "parameter": name in _parameter_names(code) if name else False,
                "wrapped_in": prefix,  # the root's path to what `expression` names ("module": inside DDP)
                "executed_lines": sorted(lines) if lines is not None else None,
            })
        return found
    import gc

    for obj in gc.get_objects():
        if isinstance(obj, torch.nn.Module):
            n = _trained_params(obj, param_ids)
            if n == 0:
                continue
            key = (n, sum(1 for _ in obj.modules()), 0)
            if best is None or key > best:
                best = key
                found = RootModel(obj, None, None, None, None, n)
    return found


@dataclass
class ScriptVariable:
    expression: str
    file: str
    function: str
    frame_line: int


def find_variable(script: Path, obj: Any) -> ScriptVariable | None:
    """How the script's frames name ``obj`` (its optimizer, say): a local or global, or an
    attribute one level down; the innermost frame wins."""
    script_path = os.path.abspath(script)
    frame = sys._getframe(1)
    while frame is not None:
        if os.path.abspath(frame.f_code.co_filename) == script_path:
            found = None
            scopes = [frame.f_locals]
            if frame.f_globals is not frame.f_locals:
                scopes.append(frame.f_globals)
            for scope in scopes:
                for name, value in list(scope.items()):
                    if value is obj and not name.startswith("__"):
                        found = name
                        break
                    if found is None and hasattr(value, "__dict__") and not isinstance(value, (type, type(os))):
                        try:
                            attrs = vars(value)
                        except TypeError:
                            continue
                        for attr, inner in list(attrs.items()):
                            if inner is obj:
                                found = f"{name}.{attr}"
                                break
                    if found:
                        break
                if found:
                    break
            _drop_locals_snapshot(frame)
            if found:
                return ScriptVariable(found, script_path, frame.f_code.co_name, frame.f_lineno)
        frame = frame.f_back
    return None
