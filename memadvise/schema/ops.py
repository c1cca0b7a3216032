"""The op vocabulary: every set of aten op names memadvise reasons about, in one place.

Names are op overload packets as a ``TorchDispatchMode`` sees them, below autograd
(``func._overloadpacket.__name__``: ``"addmm"``, ``"native_dropout"``). Plain data: no
torch, so every stage can import it.
"""

from __future__ import annotations

# Linear layers' products: what Megatron-LM's selective recompute keeps (the attention
# scores and everything pointwise are recomputed).
LINEAR_OPS = frozenset({"mm", "addmm", "_addmm_activation"})

# Attention kernels whose outputs (with their logsumexp) a selective policy keeps.
ATTENTION_OPS = frozenset({
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_flash_attention_forward", "_efficient_attention_forward",
})

CONVOLUTION_OPS = frozenset({"convolution", "_convolution", "mkldnn_convolution", "cudnn_convolution"})

# "Save matmuls": every matrix product (batched ones, i.e. eager attention scores, too),
# convolution and fused attention kernel; the selective policy of memadvise 0.1.
SAVE_MATMUL_OPS = LINEAR_OPS | {"bmm", "baddbmm"} | CONVOLUTION_OPS | ATTENTION_OPS

# torchtitan's op-level selective AC save list (torchtitan/distributed/activation_checkpoint.py,
# ``_save_list`` of 2024-25): every ``mm`` (its linear layers run as ``mm`` on flattened
# inputs), the fused attention kernels, ``max`` (the absolute maximum low-precision
# training derives its scales from) and the reduce-scatter of tensor parallelism.
# torchtitan's own policy also recomputes every second ``mm`` (it keeps the 1st, 3rd, ...
# call); that rule is no fixed set of op names, so this preset keeps every call, and a
# per-unit keep list of ("mm", 0), ("mm", 2), ... states torchtitan's exact choice.
TORCHTITAN_SAVE_OPS = frozenset({
    "mm", "_scaled_dot_product_efficient_attention", "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_cudnn_attention", "max", "reduce_scatter_tensor",
})

# Ops the traffic model times at the device's matrix-multiply rate (FLOP-bound kernels).
MATMUL_KERNEL_OPS = frozenset({"mm", "addmm", "bmm", "baddbmm", "linear", "matmul", "addbmm"})

# Ops that return views or metadata: they move no bytes.
VIEW_OPS = frozenset({
    "view", "_unsafe_view", "reshape", "transpose", "t", "permute", "expand", "expand_as", "squeeze", "unsqueeze",
    "select", "slice", "as_strided", "detach", "alias", "split", "split_with_sizes", "unbind", "chunk", "narrow",
    "diagonal", "unfold", "view_as", "view_as_real", "view_as_complex", "_reshape_alias", "lift_fresh",
    "empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided", "set_", "resize_",
})

# Ops that draw random numbers (dropout's mask among them): a unit running one needs its
# RNG state preserved under recompute (torch.utils.checkpoint's preserve_rng_state).
RNG_OPS = frozenset({
    "bernoulli", "bernoulli_", "native_dropout", "_fused_dropout", "dropout",
    "rand", "rand_like", "randn", "randn_like", "randint", "randint_like",
    "randperm", "normal", "normal_", "uniform_", "multinomial", "exponential_",
    "geometric_", "cauchy_", "log_normal_", "random_", "poisson",
    "rrelu_with_noise", "_standard_gamma",
})

# Ops that allocate scratch buffers that are no tensor on some backend (oneDNN, cuBLAS,
# cuDNN, attention kernels): the scratch probe replays each signature to measure them.
PROBE_OPS = frozenset({
    "convolution", "_convolution", "convolution_backward", "mkldnn_convolution",
    "cudnn_convolution", "cudnn_convolution_transpose", "miopen_convolution",
    "mm", "addmm", "bmm", "baddbmm", "_addmm_activation",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_backward", "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention_backward", "_scaled_dot_product_flash_attention_for_cpu_backward",
    "_flash_attention_backward", "_efficient_attention_backward",
})

# Ops torch.utils.checkpoint's selective policy never sees (SAC_IGNORED_OPS): the count of
# an op's calls inside a unit skips them, as the policy's own count does.
SAC_IGNORED_OPS = frozenset({"detach"})

# Ops autocast runs in float32 whatever their inputs (its "fp32 list" on CUDA and CPU, and
# the reductions/losses it promotes), by aten name; their backward ops run in float32 too
# (the traffic model leaves them at their recorded time).
AUTOCAST_FP32 = frozenset({
    "softmax", "_softmax", "log_softmax", "_log_softmax", "layer_norm", "native_layer_norm", "group_norm",
    "native_group_norm", "norm", "nll_loss", "nll_loss_forward", "nll_loss2d_forward", "cross_entropy_loss",
    "mse_loss", "binary_cross_entropy", "cumsum", "exp", "log", "pow", "sum", "prod", "mean",
})


def runs_in_float32(name: str) -> bool:
    """Whether autocast runs op ``name`` (or the forward op of a backward) in float32."""
    base = name.removesuffix("_backward").removesuffix("_backward_data")
    return name.startswith("_foreach") or name in AUTOCAST_FP32 or base in AUTOCAST_FP32
