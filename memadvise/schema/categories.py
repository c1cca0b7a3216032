"""Memory categories: every byte of a step belongs to exactly one (see docs/design.md)."""

from __future__ import annotations

from enum import IntEnum


class Category(IntEnum):
    PARAMETER = 0  # parameters and buffers of the model
    GRADIENT = 1
    OPTIMIZER_STATE = 2
    ACTIVATION = 3  # held by autograd (or checkpoint machinery) for backward
    TEMPORARY = 4  # everything else made during the step
    INPUT = 5  # the batch
    UNTRACKED = 6  # held by the device allocator but by no tensor (library workspaces); CUDA

    @property
    def label(self) -> str:
        return self.name.lower()


CATEGORY_NAMES = [c.label for c in Category]
N_CATEGORIES = len(Category)


class Phase(IntEnum):
    FORWARD = 0
    BACKWARD = 1
    OPTIMIZER = 2

    @property
    def label(self) -> str:
        return self.name.lower()
