"""Live bytes over an event clock: the one piece of arithmetic measured and predicted share.

A storage is live on ``[alloc, free)``: from the clock of the op that made it to the
clock of the event that freed it. ``alloc < 0`` means it existed before the step;
``free < 0`` means it outlived the step. Memory only grows when an op allocates, so the
peak of a step is the largest live total at an op's clock.
"""

from __future__ import annotations

import numpy as np

FOREVER = np.iinfo(np.int64).max // 4


def live_bytes(query: np.ndarray, alloc: np.ndarray, free: np.ndarray, nbytes: np.ndarray) -> np.ndarray:
    """Total bytes live at each clock in ``query`` (alloc <= q < free). ``free`` normalized."""
    query = np.asarray(query, dtype=np.float64)
    if len(nbytes) == 0:
        return np.zeros(len(query), dtype=np.int64)
    alloc = np.asarray(alloc, dtype=np.float64)
    free = np.asarray(free, dtype=np.float64)
    nbytes = np.asarray(nbytes, dtype=np.int64)
    a_order = np.argsort(alloc, kind="stable")
    f_order = np.argsort(free, kind="stable")
    a_cum = np.concatenate(([0], np.cumsum(nbytes[a_order])))
    f_cum = np.concatenate(([0], np.cumsum(nbytes[f_order])))
    na = np.searchsorted(alloc[a_order], query, side="right")
    nf = np.searchsorted(free[f_order], query, side="right")
    return a_cum[na] - f_cum[nf]


def live_by_category(
    query: np.ndarray,
    alloc: np.ndarray,
    free: np.ndarray,
    nbytes: np.ndarray,
    category: np.ndarray,
    n_categories: int,
) -> np.ndarray:
    """``[len(query), n_categories]`` live bytes per category."""
    out = np.zeros((len(query), n_categories), dtype=np.int64)
    for c in range(n_categories):
        mask = category == c
        if mask.any():
            out[:, c] = live_bytes(query, alloc[mask], free[mask], nbytes[mask])
    return out
