"""The recorder takes its global hooks away with it: a torch.compile(module) later in the
same process (verify, a user of the Python API, the compile probe) sees none of them."""

import warnings

import torch
from torch.nn.modules import module as M

from memadvise.collect.recorder import Recorder


def test_recorder_leaves_no_global_module_hook_behind():
    rec = Recorder(torch.device("cpu"))
    rec.start()
    torch.nn.Linear(2, 2)(torch.ones(1, 2))
    rec.stop()
    assert not M._global_forward_hooks and not M._global_forward_pre_hooks
    assert not M._global_forward_hooks_with_kwargs  # PyTorch's handle forgets this table
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*global hooks")
        torch.compile(torch.nn.Linear(2, 2))
