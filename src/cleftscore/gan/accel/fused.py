"""Fused elementwise stages of the shared-weight modulated convolution (CUDA, Triton).

Without per-sample weights, a StyleGAN2 synthesis layer is: scale the input channels by the
styles, a plain convolution, then demodulate, add noise and bias, leaky ReLU and clamp. In plain
PyTorch each of those is a pass over the activations, forward and backward; at 1024 px they are
most of a projection step's memory traffic (``cleftscore bench step-cost``). Two custom operators
replace them with one pass each way, the job NVIDIA's ``bias_act`` CUDA op does in the official
code:

* :func:`demod_act` -- ``clamp(lrelu(y * dcoefs + noise + bias))``; its backward reads the
  incoming gradient and ``y`` once and writes the gradient of ``y`` plus the (small) gradients of
  the coefficients, the noise and the bias.
* :func:`scale_channels` -- ``x * styles``; its backward writes the gradient of ``x`` and the
  styles' gradient in one pass instead of three.

They are ``torch.library`` custom operators: a plain-PyTorch implementation (every device; the
reference), Triton kernels on CUDA, and shape-only implementations so the meta-device cost model
traces them. The Triton path runs only where :func:`fused_kernels_usable` says so: on CUDA with
Triton installed, contiguous NCHW tensors, outside ``torch.compile`` (which fuses by itself) and
``torch.func`` transforms, and after a one-time check on the GPU that the kernels compile and
agree with the reference; otherwise callers use plain PyTorch. They have first derivatives only
(no ``create_graph=True`` double backward), which is all projection and adaptation need.

:data:`FUSED_KERNELS` puts them into a synthesis layer: the caller passes it to the synthesis
network's ``forward`` (``kernels=``); :class:`cleftscore.gan.invert.InversionSettings` does so
unless its ``fused_kernels`` is False. The reference network
(:mod:`cleftscore.gan.networks`) never imports this module.
"""

import contextlib
import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from cleftscore.gan.networks import SynthesisLayer, demodulation_coefficients, prescale_fp16, shared_weight_conv

__all__ = [
    "demod_act",
    "scale_channels",
    "fused_kernels_usable",
    "fused_kernels_active",
    "undemodulated_conv2d",
    "UndemodulatedConv",
    "FusedKernels",
    "FUSED_KERNELS",
]

logger = logging.getLogger(__name__)

_SLOPE = 0.2
#: Results of the per-GPU check, by device index (a capture may only read them).
_PROBED: dict[int, bool] = {}


# --------------------------------------------------------------------------------------------
# Reference implementation (any device) and the operators
# --------------------------------------------------------------------------------------------


def _pre_act(y: Tensor, dcoefs: Tensor, noise: Tensor | None, bias: Tensor) -> Tensor:
    acc = torch.promote_types(y.dtype, torch.float32)  # float32, or float64 for float64 input
    v = y.to(acc) * dcoefs.to(acc)[:, :, None, None] + bias.to(acc)[None, :, None, None]
    return v if noise is None else v + noise.to(acc)


def _act(v: Tensor, clamp: float) -> Tensor:
    a = F.leaky_relu(v, _SLOPE)
    return a if math.isinf(clamp) else a.clamp(-clamp, clamp)


def _demod_act_reference(y: Tensor, dcoefs: Tensor, noise: Tensor | None, bias: Tensor, clamp: float) -> Tensor:
    return _act(_pre_act(y, dcoefs, noise, bias), clamp).to(y.dtype)


def _demod_act_backward_reference(
    grad: Tensor, y: Tensor, dcoefs: Tensor, noise: Tensor | None, bias: Tensor, clamp: float
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    v = _pre_act(y, dcoefs, noise, bias)
    g = grad.to(v.dtype)
    gv = torch.where(v > 0, g, g * _SLOPE)
    if not math.isinf(clamp):
        a = F.leaky_relu(v, _SLOPE)
        gv = gv * ((a > -clamp) & (a < clamp))
    grad_y = (gv * dcoefs.to(v.dtype)[:, :, None, None]).to(y.dtype)
    grad_d = (gv * y.to(v.dtype)).sum(dim=(2, 3))
    grad_noise = gv.sum(dim=1, keepdim=True) if noise is not None else gv.new_zeros(0)
    return grad_y, grad_d, grad_noise, gv.sum(dim=(0, 2, 3))


def _scale_channels_reference(x: Tensor, styles: Tensor) -> Tensor:
    return x * styles.to(x.dtype)[:, :, None, None]


def _scale_channels_backward_reference(grad: Tensor, x: Tensor, styles: Tensor) -> tuple[Tensor, Tensor]:
    acc = torch.promote_types(x.dtype, torch.float32)
    s = styles.to(x.dtype).to(acc)[:, :, None, None]
    grad_x = (grad.to(acc) * s).to(x.dtype)
    return grad_x, (grad.to(acc) * x.to(acc)).sum(dim=(2, 3))


# The reference functions are the operators' implementation on every device but CUDA.
_demod_act = torch.library.custom_op("cleftscore::demod_act", _demod_act_reference, mutates_args=())
_demod_act_backward = torch.library.custom_op(
    "cleftscore::demod_act_backward", _demod_act_backward_reference, mutates_args=()
)
_scale_channels = torch.library.custom_op("cleftscore::scale_channels", _scale_channels_reference, mutates_args=())
_scale_channels_backward = torch.library.custom_op(
    "cleftscore::scale_channels_backward", _scale_channels_backward_reference, mutates_args=()
)


@_demod_act.register_fake
def _(y, dcoefs, noise, bias, clamp):
    return torch.empty_like(y)


@_demod_act_backward.register_fake
def _(grad, y, dcoefs, noise, bias, clamp):
    n, c, h, w = y.shape
    acc = torch.promote_types(y.dtype, torch.float32)
    grad_noise = y.new_empty((n, 1, h, w) if noise is not None else (0,), dtype=acc)
    return torch.empty_like(y), y.new_empty((n, c), dtype=acc), grad_noise, y.new_empty((c,), dtype=acc)


@_scale_channels.register_fake
def _(x, styles):
    return torch.empty_like(x)


@_scale_channels_backward.register_fake
def _(grad, x, styles):
    return torch.empty_like(x), x.new_empty(x.shape[:2], dtype=torch.promote_types(x.dtype, torch.float32))


def _demod_act_setup(ctx, inputs, output) -> None:
    y, dcoefs, noise, bias, clamp = inputs
    ctx.save_for_backward(y, dcoefs, noise, bias)
    ctx.clamp = clamp


def _demod_act_grad(ctx, grad):
    y, dcoefs, noise, bias = ctx.saved_tensors
    grad_y, grad_d, grad_noise, grad_b = _demod_act_backward(grad, y, dcoefs, noise, bias, ctx.clamp)
    if noise is None:
        grad_noise = None
    else:
        if noise.shape[0] == 1 and y.shape[0] > 1:
            grad_noise = grad_noise.sum(dim=0, keepdim=True)
        grad_noise = grad_noise.to(noise.dtype)
    return grad_y, grad_d.to(dcoefs.dtype), grad_noise, grad_b.to(bias.dtype), None


def _scale_channels_setup(ctx, inputs, output) -> None:
    ctx.save_for_backward(*inputs)


def _scale_channels_grad(ctx, grad):
    x, styles = ctx.saved_tensors
    grad_x, grad_s = _scale_channels_backward(grad, x, styles)
    return grad_x, grad_s.to(styles.dtype)


_demod_act.register_autograd(_demod_act_grad, setup_context=_demod_act_setup)
_scale_channels.register_autograd(_scale_channels_grad, setup_context=_scale_channels_setup)


# --------------------------------------------------------------------------------------------
# Triton launches (CUDA; also run by the tests in Triton's CPU interpreter)
# --------------------------------------------------------------------------------------------


#: Programs the backward kernel should launch at least (a few per streaming multiprocessor).
_MIN_PROGRAMS = 2048


def _block(hw: int) -> int:
    """Elements per program: big blocks for big maps, small ones so small maps still spread out."""
    if hw >= 1 << 16:
        return 1024
    return max(16, min(256, 1 << (hw - 1).bit_length()))


def _on_device(t: Tensor) -> contextlib.AbstractContextManager:
    """Make ``t``'s GPU the current one: Triton launches on the current device and its stream."""
    return torch.cuda.device(t.device) if t.is_cuda else contextlib.nullcontext()


def _noise_rows(noise: Tensor | None, hw: int) -> tuple[Tensor | None, int]:
    if noise is None:
        return None, 0
    rows = noise.float().contiguous().reshape(noise.shape[0], hw)
    return rows, (hw if rows.shape[0] > 1 else 0)


def launch_demod_act(y: Tensor, dcoefs: Tensor, noise: Tensor | None, bias: Tensor, clamp: float) -> Tensor:
    """Triton forward of :func:`demod_act` (same arguments)."""
    import triton  # noqa: F401

    from cleftscore.gan.accel import triton_kernels as K

    n, c, h, w = y.shape
    hw = h * w
    y = y.contiguous()
    nz, stride_n = _noise_rows(noise, hw)
    out = torch.empty_like(y)
    block = _block(hw)
    with _on_device(y):
        K.demod_act_fwd[(n * c, triton.cdiv(hw, block))](
            y, dcoefs.float().contiguous(), y if nz is None else nz, bias.float().contiguous(), out,
            c, hw, stride_n, 0.0 if math.isinf(clamp) else float(clamp), _SLOPE,
            HAS_NOISE=nz is not None, HAS_CLAMP=not math.isinf(clamp), BLOCK=block,
        )  # fmt: skip
    return out


def launch_demod_act_backward(
    grad, y, dcoefs, noise, bias, clamp, *, min_programs: int = _MIN_PROGRAMS
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Triton backward of :func:`demod_act` (outputs of ``cleftscore::demod_act_backward``)."""
    import triton

    from cleftscore.gan.accel import triton_kernels as K

    n, c, h, w = y.shape
    hw = h * w
    y, grad = y.contiguous(), grad.contiguous()
    nz, stride_n = _noise_rows(noise, hw)
    block = _block(hw)
    nblk = triton.cdiv(hw, block)
    # Split the channels into groups when images x blocks alone would leave the GPU idle
    # (small maps with many channels); the groups' noise gradients are summed afterwards.
    groups = max(1, min(c, min_programs // (n * nblk)))
    per = triton.cdiv(c, groups)
    groups = triton.cdiv(c, per)
    grad_y = torch.empty_like(y)
    parts_d = torch.empty((n * c, nblk), device=y.device, dtype=torch.float32)
    parts_b = torch.empty_like(parts_d)
    parts_noise = torch.empty((n, groups, h, w) if nz is not None else (0,), device=y.device, dtype=torch.float32)
    with _on_device(y):
        K.demod_act_bwd[(n, nblk, groups)](
            grad, y, dcoefs.float().contiguous(), y if nz is None else nz, bias.float().contiguous(),
            grad_y, parts_d, parts_b, parts_noise if nz is not None else parts_d,
            c, hw, nblk, per, stride_n, 0.0 if math.isinf(clamp) else float(clamp), _SLOPE,
            HAS_NOISE=nz is not None, HAS_CLAMP=not math.isinf(clamp), BLOCK=block,
        )  # fmt: skip
    grad_noise = parts_noise.sum(dim=1, keepdim=True) if nz is not None and groups > 1 else parts_noise
    return grad_y, parts_d.sum(dim=1).reshape(n, c), grad_noise, parts_b.sum(dim=1).reshape(n, c).sum(dim=0)


def launch_scale_channels_backward(grad: Tensor, x: Tensor, styles: Tensor) -> tuple[Tensor, Tensor]:
    """Triton backward of :func:`scale_channels` (outputs of ``cleftscore::scale_channels_backward``)."""
    import triton

    from cleftscore.gan.accel import triton_kernels as K

    n, c, h, w = x.shape
    hw = h * w
    x, grad = x.contiguous(), grad.contiguous()
    block = _block(hw)
    nblk = triton.cdiv(hw, block)
    grad_x = torch.empty_like(x)
    parts = torch.empty((n * c, nblk), device=x.device, dtype=torch.float32)
    s = styles.to(x.dtype).float().contiguous()
    with _on_device(x):
        K.scale_channels_bwd[(n * c, nblk)](grad, x, s, grad_x, parts, hw, nblk, BLOCK=block)
    return grad_x, parts.sum(dim=1).reshape(n, c)


@_demod_act.register_kernel("cuda")
def _(y, dcoefs, noise, bias, clamp):
    return launch_demod_act(y, dcoefs, noise, bias, clamp)


@_demod_act_backward.register_kernel("cuda")
def _(grad, y, dcoefs, noise, bias, clamp):
    return launch_demod_act_backward(grad, y, dcoefs, noise, bias, clamp)


@_scale_channels_backward.register_kernel("cuda")
def _(grad, x, styles):
    return launch_scale_channels_backward(grad, x, styles)


# --------------------------------------------------------------------------------------------
# When to use them
# --------------------------------------------------------------------------------------------


#: Shapes, dtypes, noise, clamp and backward program floor of the check: between them every
#: compiled variant the networks use (block sizes 16-1024, one and several channel groups,
#: per-image, shared and no noise, clamp or none, float16, bfloat16 and float32).
_PROBE_CASES = (
    ((2, 3, 9, 7), torch.float16, "per_image", 1.0, _MIN_PROGRAMS),
    ((2, 5, 256, 260), torch.bfloat16, "shared", math.inf, 1),
    ((3, 4, 20, 20), torch.float32, None, 0.5, _MIN_PROGRAMS),
)


def _probe_case(device: torch.device, shape, dtype, noise_kind, clamp: float, min_programs: int) -> bool:
    gen = torch.Generator(device=device).manual_seed(0)
    n, c, h, w = shape
    kw = {"device": device, "generator": gen}
    y, grad = torch.randn(shape, **kw).to(dtype), torch.randn(shape, **kw).to(dtype)
    dcoefs, bias, styles = torch.rand((n, c), **kw) + 0.5, torch.randn((c,), **kw), torch.randn((n, c), **kw)
    noise = None if noise_kind is None else torch.randn((n if noise_kind == "per_image" else 1, 1, h, w), **kw)
    pairs = [(launch_demod_act(y, dcoefs, noise, bias, clamp), _demod_act_reference(y, dcoefs, noise, bias, clamp))]
    got = launch_demod_act_backward(grad, y, dcoefs, noise, bias, clamp, min_programs=min_programs)
    pairs += zip(got, _demod_act_backward_reference(grad, y, dcoefs, noise, bias, clamp), strict=True)
    pairs += zip(
        launch_scale_channels_backward(grad, y, styles),
        _scale_channels_backward_reference(grad, y, styles),
        strict=True,
    )
    return all(a.shape == b.shape and torch.allclose(a.float(), b.float(), rtol=2e-2, atol=2e-2) for a, b in pairs)


def _probe(device: torch.device) -> bool:
    """Compile the kernels on ``device`` and check them against the reference, once per GPU."""
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index in _PROBED:
        return _PROBED[index]
    if torch.cuda.is_current_stream_capturing():
        return False  # cannot check inside a capture; the warm-up steps before it do
    ok = False
    try:
        import triton  # noqa: F401

        with torch.cuda.device(device):
            ok = all(_probe_case(device, *case) for case in _PROBE_CASES)
        if not ok:
            logger.warning("fused CUDA kernels disagree with the reference on %s; using plain PyTorch ops", device)
    except Exception as exc:  # noqa: BLE001 - any failure means: use the plain ops
        logger.warning("fused CUDA kernels unavailable on %s (%s: %s); using plain PyTorch ops",
                       device, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")  # fmt: skip
    _PROBED[index] = ok
    return ok


def fused_kernels_usable(x: Tensor) -> bool:
    """Whether :func:`demod_act` and :func:`scale_channels` should run for activations like ``x``.

    True on CUDA (after the one-time check of the kernels on that GPU) and on the meta device
    (so that the cost model traces what CUDA runs), for contiguous NCHW tensors, outside
    ``torch.compile`` and ``torch.func`` transforms.
    """
    if x.device.type not in ("cuda", "meta"):
        return False
    if x.ndim != 4 or not x.is_contiguous() or x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        return False
    if torch.compiler.is_compiling():
        return False
    if torch._C._functorch.peek_interpreter_stack() is not None:
        return False
    return x.device.type == "meta" or _probe(x.device)


def fused_kernels_active(device: torch.device | str) -> bool:
    """Whether contiguous activations on ``device`` go through the fused kernels now.

    For the record of a run (``result.json``), where they were asked for: True on a GPU whose
    check passed; False elsewhere or before the first use on that GPU.
    """
    device = torch.device(device)
    if device.type != "cuda":
        return False
    index = device.index if device.index is not None else torch.cuda.current_device()
    return _PROBED.get(index, False)


def demod_act(y: Tensor, dcoefs: Tensor, noise: Tensor | None, bias: Tensor, clamp: float | None) -> Tensor:
    """``clamp(leaky_relu(y * dcoefs + noise + bias, 0.2))`` in one pass (differentiable).

    Parameters
    ----------
    y : Tensor
        ``[N, C, H, W]`` convolution output.
    dcoefs : Tensor
        ``[N, C]`` demodulation coefficients (times any gain), float32.
    noise : Tensor or None
        ``[H, W]``, ``[1, 1, H, W]`` or ``[N, 1, H, W]``, already scaled.
    bias : Tensor
        ``[C]``.
    clamp : float or None
        Symmetric clamp of the output.

    Returns
    -------
    Tensor
        ``[N, C, H, W]`` in ``y.dtype``; arithmetic in float32, rounded once.
    """
    if noise is not None:
        noise = noise.reshape(-1, 1, *noise.shape[-2:])
        if noise.shape[0] not in (1, y.shape[0]) or noise.shape[-2:] != y.shape[-2:]:
            raise ValueError(f"noise of shape {tuple(noise.shape)} does not broadcast per image to {tuple(y.shape)}")
    return _demod_act(y, dcoefs, noise, bias, math.inf if clamp is None else float(clamp))


def scale_channels(x: Tensor, styles: Tensor) -> Tensor:
    """``x * styles[:, :, None, None]`` (styles rounded to ``x.dtype``), with a one-pass backward."""
    return _scale_channels(x, styles)


# --------------------------------------------------------------------------------------------
# The synthesis layer with them
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UndemodulatedConv:
    """A shared-weight modulated convolution before its demodulation.

    Attributes
    ----------
    y : Tensor
        ``[N, O, H', W']`` convolution of the style-scaled input, in the input's dtype.
    dcoefs : Tensor
        ``[N, O]`` demodulation coefficients times the output gain (float32 or wider), still to
        be applied (by :func:`demod_act`).
    """

    y: Tensor
    dcoefs: Tensor


def undemodulated_conv2d(
    x: Tensor, weight: Tensor, styles: Tensor, *, up: bool, kernel: Tensor | None, out_gain: float
) -> UndemodulatedConv:
    """The unfused demodulated convolution of :mod:`cleftscore.gan.networks`, stopped before the
    demodulation, with the input scaled by :func:`scale_channels` (one-pass backward).

    Same arguments as the network's modulated convolution (``demodulate=True``, no noise).
    """
    weight, styles = prescale_fp16(x, weight, styles)
    dcoefs = demodulation_coefficients(weight, styles, gain=out_gain)
    y = shared_weight_conv(scale_channels(x, styles), weight, up=up, kernel=kernel)
    return UndemodulatedConv(y=y, dcoefs=dcoefs)


@dataclass(frozen=True)
class FusedKernels:
    """The unfused synthesis layer ending in one fused kernel (demodulation to clamp).

    A :class:`cleftscore.gan.networks.LayerKernels`: pass :data:`FUSED_KERNELS` as ``kernels``
    to the synthesis network. It runs where :func:`fused_kernels_usable` says so (a GPU whose
    check passed, or the meta device), the plain layer elsewhere.
    """

    def usable(self, x: Tensor) -> bool:
        """See :func:`fused_kernels_usable`."""
        return fused_kernels_usable(x)

    def synthesis_layer(
        self, layer: SynthesisLayer, x: Tensor, styles: Tensor, noise: Tensor | None, gain: float
    ) -> Tensor:
        """``layer``'s unfused output: convolution, then :func:`demod_act` in one pass."""
        conv = undemodulated_conv2d(x, layer.weight, styles, up=layer.up, kernel=layer.resample_filter, out_gain=gain)
        return demod_act(conv.y, conv.dcoefs, noise, layer.bias * gain, layer.conv_clamp)


#: The fused kernels as a synthesis network's ``kernels`` argument.
FUSED_KERNELS = FusedKernels()
