"""StyleGAN2 generator (config F, ``skip`` architecture) in plain PyTorch.

The layers are written from the StyleGAN2 paper (Karras et al., 2020) and follow the numerics of
NVIDIA's stylegan2-ada-pytorch generator, so that an official ``G_ema`` state dict loads with
``load_state_dict(..., strict=True)`` and produces the same images. Parameter and buffer names,
their shapes and their order are the official ones (``mapping.fc0.weight``,
``synthesis.b8.conv0.noise_const``, ...).

File order, bottom-up: resampling primitives, equalised fully connected layer, modulated
convolution, synthesis layer, toRGB layer, synthesis block, synthesis network, mapping network,
generator, and :func:`infer_config`, which reads a :class:`GeneratorConfig` off a state dict.

This is the readable reference path: plain PyTorch, on CPU and CUDA alike. As in the official
code, the ``num_fp16_res`` highest resolutions run in float16 unless ``force_fp32=True`` (on any
device). Faster code for a layer comes in from outside, as a :class:`LayerKernels` argument of
``forward`` (:mod:`cleftscore.gan.accel` has the fused CUDA kernels); this module never imports it.

References
----------
.. [1] T. Karras, S. Laine, M. Aittala, J. Hellsten, J. Lehtinen, T. Aila, "Analyzing and
   Improving the Image Quality of StyleGAN", CVPR 2020.
.. [2] T. Karras, M. Aittala, J. Hellsten, S. Laine, J. Lehtinen, T. Aila, "Training Generative
   Adversarial Networks with Limited Data", NeurIPS 2020.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cleftscore.gan.config import GeneratorConfig

__all__ = [
    "Generator",
    "MappingNetwork",
    "SynthesisNetwork",
    "SynthesisBlock",
    "SynthesisLayer",
    "ToRGBLayer",
    "FullyConnectedLayer",
    "infer_config",
    "LayerKernels",
    "NOISE_MODES",
]

#: Accepted values of ``noise_mode``.
NOISE_MODES = ("random", "const", "none")

_LRELU_SLOPE = 0.2
_LRELU_GAIN = math.sqrt(2.0)
_BLUR_TAPS = (1.0, 3.0, 3.0, 1.0)


class LayerKernels(Protocol):
    """Faster code for an unfused :class:`SynthesisLayer`, handed to ``forward`` by the caller.

    :data:`cleftscore.gan.accel.fused.FUSED_KERNELS` is the one the library ships (Triton
    kernels on CUDA). It must give the plain layer's numbers up to float rounding.
    """

    def usable(self, x: Tensor) -> bool:
        """Whether :meth:`synthesis_layer` should run for activations like ``x``."""
        ...

    def synthesis_layer(
        self, layer: SynthesisLayer, x: Tensor, styles: Tensor, noise: Tensor | None, gain: float
    ) -> Tensor:
        """What ``layer(x, ...)`` returns unfused, given its ``styles``, noise map (times the noise
        strength and ``gain``) and the activation ``gain`` folded in front of the leaky ReLU."""
        ...


# --------------------------------------------------------------------------------------------
# Resampling primitives
# --------------------------------------------------------------------------------------------


def _blur_kernel(taps: Sequence[float] = _BLUR_TAPS) -> Tensor:
    """2-D separable FIR kernel from 1-D ``taps``, normalised to sum 1 (``[4, 4]`` for 4 taps)."""
    k = torch.as_tensor(taps, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def _upfirdn2d(x: Tensor, kernel: Tensor, *, up: int, pad: tuple[int, int, int, int], gain: float) -> Tensor:
    """Upsample by zero insertion, pad, then filter with a 2-D FIR kernel.

    Parameters
    ----------
    x : Tensor
        ``[N, C, H, W]``.
    kernel : Tensor
        ``[kh, kw]`` filter (applied as a true convolution, i.e. flipped).
    up : int
        Upsampling factor (zeros are inserted after every sample).
    pad : tuple of int
        ``(left, right, top, bottom)`` padding after upsampling; must be >= 0.
    gain : float
        Overall gain; the 2-D kernel is scaled by ``gain``.

    Returns
    -------
    Tensor
        ``[N, C, H * up + top + bottom - kh + 1, W * up + left + right - kw + 1]``.

    Notes
    -----
    Each case is one depthwise kernel launch where it can be: symmetric padding goes into the
    convolution, and zero insertion followed by the filter is a strided transposed convolution
    with the unflipped kernel (``out[j] = sum_i x[i] k[j + p - up * i]``).
    """
    n, c, h, w = x.shape
    left, right, top, bottom = pad
    kh, kw = kernel.shape
    if up > 1:
        # A transposed conv of stride `up` and padding q gives out[j] = sum_i x[i] k[j + q - up*i];
        # zero insertion, left pad p0 and the flipped filter give the same with q = kw - 1 - p0.
        # It crops q on both sides, so it applies when the output lengths agree.
        qx, qy = kw - 1 - left, kh - 1 - top
        same_w = qx >= 0 and (w - 1) * up - 2 * qx + kw == w * up + left + right - kw + 1
        same_h = qy >= 0 and (h - 1) * up - 2 * qy + kh == h * up + top + bottom - kh + 1
        if same_w and same_h:
            f = (kernel * gain).to(x.dtype)[None, None].expand(c, 1, kh, kw)
            return F.conv_transpose2d(x, f, stride=up, padding=(qy, qx), groups=c)
        z = x.new_zeros(n, c, h, up, w, up)
        z[:, :, :, 0, :, 0] = x
        x = z.reshape(n, c, h * up, w * up)
        h, w = h * up, w * up
    f = (kernel * gain).to(x.dtype).flip((0, 1))
    f = f[None, None].expand(c, 1, *f.shape)
    if left == right and top == bottom:
        return F.conv2d(x, f, padding=(top, left), groups=c)
    x = F.pad(x, list(pad))
    return F.conv2d(x, f, groups=c)


def _upsample2d(x: Tensor, kernel: Tensor) -> Tensor:
    """2x FIR upsampling of ``x`` (``[N, C, H, W]`` -> ``[N, C, 2H, 2W]``), unit DC gain."""
    kw = kernel.shape[-1]
    p0 = (kw + 1) // 2
    p1 = (kw - 2) // 2
    return _upfirdn2d(x, kernel, up=2, pad=(p0, p1, p0, p1), gain=4.0)


def _conv2d_up2(x: Tensor, weight: Tensor, kernel: Tensor, *, groups: int) -> Tensor:
    """3x3 convolution with 2x upsampling: strided transposed conv, then the FIR filter.

    ``weight`` is ``[O, I, k, k]`` in conv2d layout (``O`` a multiple of ``groups``); the output is
    ``[N, O, 2H, 2W]`` for ``x`` of ``[N, I * groups, H, W]`` (padding 1 as for the plain 3x3 conv).
    """
    out_ch, in_per_group, k, _ = weight.shape
    fk = kernel.shape[-1]
    # Transposed-conv layout: [groups * I, O / groups, k, k].
    wt = weight.reshape(groups, out_ch // groups, in_per_group, k, k).transpose(1, 2)
    wt = wt.reshape(groups * in_per_group, out_ch // groups, k, k)
    x = F.conv_transpose2d(x, wt, stride=2, groups=groups)
    # Padding of the conv (k // 2) plus the FIR support, minus what the transposed conv added.
    p = k // 2
    p0 = p + (fk + 1) // 2 - (k - 1)
    p1 = p + (fk - 2) // 2 - (k - 2)
    return _upfirdn2d(x, kernel, up=1, pad=(p0, p1, p0, p1), gain=4.0)


def _per_sample_matmul(x: Tensor, w: Tensor) -> Tensor:
    """1x1 convolution of each sample with its own weight: ``[N, I, H, W]``, ``[N, O, I]`` -> ``[N, O, H, W]``.

    One batched matrix product in the memory layout ``x`` has (NCHW or channels-last), so
    neither the input nor the output is copied.
    """
    n, c, h, wd = x.shape
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        y = torch.bmm(x.permute(0, 2, 3, 1).reshape(n, h * wd, c), w.transpose(1, 2))  # [N, HW, O]
        return y.reshape(n, h, wd, -1).permute(0, 3, 1, 2)
    return torch.bmm(w, x.reshape(n, c, h * wd)).reshape(n, -1, h, wd)


def _bias_act(x: Tensor, bias: Tensor, *, lrelu: bool, gain: float, clamp: float | None) -> Tensor:
    """Add a per-channel bias, optional leaky ReLU (0.2), scale by ``gain``, clamp to +-``clamp``."""
    shape = [1] * x.ndim
    shape[1] = -1
    x = x + bias.to(x.dtype).reshape(shape)
    if lrelu:
        x = F.leaky_relu(x, _LRELU_SLOPE)
    if gain != 1:
        x = x * gain
    if clamp is not None:
        # hardtanh == clamp; its backward is one kernel where clamp's takes four.
        x = F.hardtanh(x, -clamp, clamp)
    return x


def prescale_fp16(x: Tensor, weight: Tensor, styles: Tensor) -> tuple[Tensor, Tensor]:
    """Weight and styles divided by their infinity norms when ``x`` is float16 (else unchanged).

    Only for demodulated convolutions, where it is a no-op on the result: it keeps the float16
    intermediate products from overflowing. The norms are constants to autograd: demodulation
    makes the output invariant to these scales, so their gradient terms cancel, and skipping them
    saves a dozen kernels per layer in every backward.
    """
    if x.dtype != torch.float16:
        return weight, styles
    in_ch, k = weight.shape[1], weight.shape[2]
    w_norm = weight.detach().norm(float("inf"), dim=(1, 2, 3), keepdim=True)
    weight = weight * (1.0 / math.sqrt(in_ch * k * k) / w_norm)
    return weight, styles / styles.detach().norm(float("inf"), dim=1, keepdim=True)


def demodulation_coefficients(weight: Tensor, styles: Tensor, *, gain: float = 1.0) -> Tensor:
    """``[N, O]`` factors that give each modulated filter unit L2 norm (eps 1e-8), times ``gain``.

    ``sum_{i,kk} (W[o,i,kk] s[n,i])^2 = sum_i s[n,i]^2 sum_kk W[o,i,kk]^2``: an ``[N, O, I]``
    product instead of ``[N, O, I, k, k]``. Not a matmul, which autocast would run in bf16; the
    arithmetic is at least float32.
    """
    acc = torch.promote_types(weight.dtype, torch.float32)
    w_sq = weight.to(acc).square().sum(dim=(2, 3))  # [O, I]
    dcoefs = ((styles.to(acc).square().unsqueeze(1) * w_sq.unsqueeze(0)).sum(dim=2) + 1e-8).rsqrt()
    return dcoefs * gain if gain != 1 else dcoefs


def shared_weight_conv(x: Tensor, weight: Tensor, *, up: bool, kernel: Tensor | None) -> Tensor:
    """The plain 3x3 (or kxk) convolution of already modulated activations, 'same' padding."""
    wx = weight.to(x.dtype)
    return _conv2d_up2(x, wx, kernel, groups=1) if up else F.conv2d(x, wx, padding=wx.shape[-1] // 2)


def _per_sample_1x1(x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, out_gain: float) -> Tensor:
    """Unfused 1x1 modulated convolution as one batched matmul with per-sample weights.

    It reads the activations once, where scaling them first would write and read them again
    (and twice more in the backward pass).
    """
    n, (out_ch, in_ch) = x.shape[0], weight.shape[:2]
    w = weight.reshape(1, out_ch, in_ch) * styles.reshape(n, 1, in_ch)  # [N, O, I]
    if demodulate:
        w = w * (w.square().sum(dim=2, keepdim=True) + 1e-8).rsqrt()
    if out_gain != 1:
        w = w * out_gain
    return _per_sample_matmul(x, w.to(x.dtype))


def _grouped_modconv(
    x: Tensor, weight: Tensor, styles: Tensor, *, demodulate: bool, up: bool, kernel: Tensor | None, out_gain: float
) -> Tensor:
    """One grouped convolution with per-sample weights (the official fused form)."""
    n, (out_ch, in_ch, k, _) = x.shape[0], weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, in_ch, 1, 1)  # [N, O, I, k, k]
    if demodulate:
        dcoefs = (w.square().sum(dim=(2, 3, 4)) + 1e-8).rsqrt()  # [N, O]
        w = w * dcoefs.reshape(n, out_ch, 1, 1, 1)
    if out_gain != 1:
        w = w * out_gain
    x = x.reshape(1, n * in_ch, *x.shape[2:])
    wx = w.reshape(n * out_ch, in_ch, k, k).to(x.dtype)
    x = _conv2d_up2(x, wx, kernel, groups=n) if up else F.conv2d(x, wx, padding=k // 2, groups=n)
    return x.reshape(n, out_ch, *x.shape[2:])


def _scale_outputs(x: Tensor, dcoefs: Tensor | None, noise: Tensor | None) -> Tensor:
    """``x * dcoefs + noise`` with either factor optional, in ``x.dtype``."""
    if dcoefs is not None:
        d = dcoefs.to(x.dtype).reshape(*dcoefs.shape, 1, 1)
        return x * d if noise is None else torch.addcmul(noise.to(x.dtype), x, d)
    return x if noise is None else x + noise.to(x.dtype)


def _modulated_conv2d(
    x: Tensor,
    weight: Tensor,
    styles: Tensor,
    *,
    demodulate: bool,
    up: bool,
    kernel: Tensor | None,
    noise: Tensor | None,
    fused: bool,
    out_gain: float = 1.0,
) -> Tensor:
    """Modulated (and optionally demodulated) convolution, 'same' padding.

    Parameters
    ----------
    x : Tensor
        ``[N, I, H, W]`` activations (float32 or float16).
    weight : Tensor
        ``[O, I, k, k]`` base weight (float32).
    styles : Tensor
        ``[N, I]`` per-sample input scales (float32).
    demodulate : bool
        Normalise each output filter to unit L2 norm (eps 1e-8).
    up : bool
        Upsample 2x (transposed conv + ``kernel`` FIR filter).
    kernel : Tensor or None
        ``[kf, kf]`` FIR kernel, needed when ``up``.
    noise : Tensor or None
        Broadcastable to the output; added after demodulation.
    fused : bool
        One grouped convolution with per-sample weights (True) or scale activations before and
        after a shared-weight convolution (False). Same result up to rounding.
    out_gain : float
        Factor on the convolution's output (folded into the demodulation coefficients or the
        per-sample weights, so it costs no pass over the activations). ``noise`` is not scaled.

    Returns
    -------
    Tensor
        ``[N, O, H', W']`` in ``x.dtype``.

    Notes
    -----
    In float16 with demodulation the weight and styles are first divided by their infinity norms
    (:func:`prescale_fp16`). Unfused, a 1x1 convolution without upsampling (toRGB) is a batched
    matrix product with per-sample weights (:func:`_per_sample_1x1`).
    """
    if demodulate:
        weight, styles = prescale_fp16(x, weight, styles)
    if fused:
        x = _grouped_modconv(x, weight, styles, demodulate=demodulate, up=up, kernel=kernel, out_gain=out_gain)
        return x if noise is None else (x + noise).to(x.dtype)  # add in the wider dtype, round once
    if weight.shape[-1] == 1 and not up:
        x = _per_sample_1x1(x, weight, styles, demodulate=demodulate, out_gain=out_gain)
        return x if noise is None else (x + noise).to(x.dtype)
    n, out_ch = x.shape[0], weight.shape[0]
    if demodulate:
        dcoefs = demodulation_coefficients(weight, styles, gain=out_gain)
    else:
        dcoefs = torch.full((n, out_ch), out_gain, device=x.device) if out_gain != 1 else None
    x = shared_weight_conv(x * styles.to(x.dtype).reshape(n, -1, 1, 1), weight, up=up, kernel=kernel)
    return _scale_outputs(x, dcoefs, noise)


# --------------------------------------------------------------------------------------------
# Layers
# --------------------------------------------------------------------------------------------


class FullyConnectedLayer(nn.Module):
    """Fully connected layer with equalised learning rate.

    The stored weight has standard deviation ``1 / lr_mul``; ``forward`` multiplies it by
    ``lr_mul / sqrt(in_features)`` and the bias by ``lr_mul``.

    Parameters
    ----------
    in_features, out_features : int
        Sizes.
    lrelu : bool
        Apply leaky ReLU (0.2) with gain sqrt(2) after the bias (else linear).
    lr_mul : float
        Learning-rate multiplier.
    bias_init : float
        Initial bias value (1 for the style affines).
    """

    def __init__(
        self, in_features: int, out_features: int, *, lrelu: bool = False, lr_mul: float = 1.0, bias_init: float = 0.0
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.lrelu = lrelu
        self.lr_mul = lr_mul
        self.bias_init = bias_init
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.weight_gain = lr_mul / math.sqrt(in_features)
        self.bias_gain = lr_mul
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Weight ~ N(0, 1 / lr_mul^2), bias = ``bias_init``."""
        with torch.no_grad():
            self.weight.normal_(0.0, 1.0 / self.lr_mul, generator=generator)
            self.bias.fill_(self.bias_init)

    def forward(self, x: Tensor) -> Tensor:
        """``[N, in_features]`` -> ``[N, out_features]``."""
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        if not self.lrelu:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return _bias_act(x.matmul(w.t()), b, lrelu=True, gain=_LRELU_GAIN, clamp=None)

    def extra_repr(self) -> str:
        act = "lrelu" if self.lrelu else "linear"
        return f"{self.in_features} -> {self.out_features}, {act}, lr_mul={self.lr_mul:g}"


class SynthesisLayer(nn.Module):
    """Modulated 3x3 convolution + noise + bias + leaky ReLU, optionally upsampling 2x.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    w_dim : int
        Size of the w vector feeding the style affine.
    resolution : int
        Output resolution (the noise maps are ``resolution x resolution``).
    up : bool
        Upsample 2x before the convolution (``conv0`` of every block above 4x4).
    conv_clamp : float or None
        Clamp of the activations.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        up: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.register_buffer("resample_filter", _blur_kernel())
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 3, 3))
        self.register_buffer("noise_const", torch.empty(resolution, resolution))
        self.noise_strength = nn.Parameter(torch.empty(()))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Weight and constant noise ~ N(0, 1); bias and noise strength 0."""
        with torch.no_grad():
            self.affine.reset_parameters(generator)
            self.weight.normal_(generator=generator)
            self.noise_const.normal_(generator=generator)
            self.noise_strength.zero_()
            self.bias.zero_()

    def forward(
        self,
        x: Tensor,
        w: Tensor,
        *,
        noise_mode: str = "random",
        noise: Tensor | None = None,
        fused: bool = True,
        generator: torch.Generator | None = None,
        kernels: LayerKernels | None = None,
    ) -> Tensor:
        """Apply the layer.

        Parameters
        ----------
        x : Tensor
            ``[N, in_channels, r, r]`` with ``r = resolution // 2`` if ``up`` else ``resolution``.
        w : Tensor
            ``[N, w_dim]``.
        noise_mode : {"random", "const", "none"}
            Source of the noise map when ``noise`` is None.
        noise : Tensor or None
            Noise map replacing ``noise_const`` (scaled by ``noise_strength``), broadcastable to
            ``[N, 1, resolution, resolution]``.
        fused : bool
            Use the grouped (per-sample weight) convolution.
        generator : torch.Generator or None
            Source of random noise for ``noise_mode="random"``.
        kernels : LayerKernels or None
            Faster code for the unfused layer (:data:`cleftscore.gan.accel.fused.FUSED_KERNELS`),
            used where its ``usable`` says so; None: plain PyTorch.

        Returns
        -------
        Tensor
            ``[N, out_channels, resolution, resolution]`` in ``x.dtype``.
        """
        styles = self.affine(w)
        # Unfused, the activation gain goes before the leaky ReLU, which commutes with a positive
        # factor: it then rides on the demodulation coefficients, the noise strength and the
        # bias instead of costing a pass over the activations (and one in the backward pass).
        # The fused (official float32) path keeps the official order of rounding.
        gain = 1.0 if fused else _LRELU_GAIN
        noise_map = self._noise_map(x, noise, noise_mode, generator, gain)
        if not fused and kernels is not None and kernels.usable(x):
            return kernels.synthesis_layer(self, x, styles, noise_map, gain)
        x = _modulated_conv2d(
            x, self.weight, styles, demodulate=True, up=self.up, kernel=self.resample_filter, noise=noise_map,
            fused=fused, out_gain=gain,
        )  # fmt: skip
        if fused:
            return _bias_act(x, self.bias, lrelu=True, gain=_LRELU_GAIN, clamp=self.conv_clamp)
        return _bias_act(x, self.bias * gain, lrelu=True, gain=1.0, clamp=self.conv_clamp)

    def _noise_map(
        self, x: Tensor, noise: Tensor | None, noise_mode: str, generator: torch.Generator | None, gain: float
    ) -> Tensor | None:
        """The noise added after the convolution, times the noise strength (and ``gain``)."""
        strength = self.noise_strength * gain if gain != 1 else self.noise_strength
        if noise is not None:
            return noise * strength
        if noise_mode == "random":
            r = self.resolution
            dev = generator.device if generator is not None else x.device
            return torch.randn((x.shape[0], 1, r, r), generator=generator, device=dev).to(x.device) * strength
        if noise_mode == "const":
            return self.noise_const * strength
        return None

    def extra_repr(self) -> str:
        up = ", up=2" if self.up else ""
        return f"{self.in_channels} -> {self.out_channels}, 3x3, res={self.resolution}{up}, clamp={self.conv_clamp}"


class ToRGBLayer(nn.Module):
    """Modulated 1x1 convolution to image channels (no demodulation) + bias.

    Parameters
    ----------
    in_channels, out_channels : int
        Feature channels and image channels.
    w_dim : int
        Size of the w vector.
    conv_clamp : float or None
        Clamp of the output.
    """

    def __init__(self, in_channels: int, out_channels: int, *, w_dim: int, conv_clamp: float | None = None) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1.0)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels))
        self.weight_gain = 1.0 / math.sqrt(in_channels)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Weight ~ N(0, 1), bias 0."""
        with torch.no_grad():
            self.affine.reset_parameters(generator)
            self.weight.normal_(generator=generator)
            self.bias.zero_()

    def forward(self, x: Tensor, w: Tensor, *, fused: bool = True) -> Tensor:
        """``[N, in_channels, r, r]``, ``[N, w_dim]`` -> ``[N, out_channels, r, r]`` in ``x.dtype``."""
        styles = self.affine(w) * self.weight_gain
        x = _modulated_conv2d(x, self.weight, styles, demodulate=False, up=False, kernel=None, noise=None, fused=fused)
        return _bias_act(x, self.bias, lrelu=False, gain=1.0, clamp=self.conv_clamp)

    def extra_repr(self) -> str:
        return f"{self.in_channels} -> {self.out_channels}, 1x1, clamp={self.conv_clamp}"


class SynthesisBlock(nn.Module):
    """One resolution of the synthesis network (``skip`` architecture).

    The 4x4 block starts from a learned constant and has one convolution (``conv1``); every
    other block has an upsampling ``conv0`` and a ``conv1``. Each block adds its toRGB output to
    the 2x FIR-upsampled image of the previous block.

    Parameters
    ----------
    in_channels : int
        Channels of the previous block (0 for the 4x4 block).
    out_channels : int
        Channels of this block.
    w_dim, resolution, img_channels : int
        Sizes.
    use_fp16 : bool
        Run the convolutions in float16 unless ``force_fp32``.
    conv_clamp : float or None
        Activation clamp.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        w_dim: int,
        resolution: int,
        img_channels: int,
        use_fp16: bool = False,
        conv_clamp: float | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.use_fp16 = use_fp16
        self.register_buffer("resample_filter", _blur_kernel())
        if in_channels == 0:
            self.const = nn.Parameter(torch.empty(out_channels, resolution, resolution))
            self.conv0 = None
        else:
            self.conv0 = SynthesisLayer(
                in_channels, out_channels, w_dim=w_dim, resolution=resolution, up=True, conv_clamp=conv_clamp
            )
        self.conv1 = SynthesisLayer(
            out_channels, out_channels, w_dim=w_dim, resolution=resolution, conv_clamp=conv_clamp
        )
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
        self.num_conv = 1 if in_channels == 0 else 2
        self.num_torgb = 1
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Constant input ~ N(0, 1) and the layers' own initialisation."""
        with torch.no_grad():
            if self.in_channels == 0:
                self.const.normal_(generator=generator)
        for layer in (self.conv0, self.conv1, self.torgb):
            if layer is not None:
                layer.reset_parameters(generator)

    def noise_layers(self) -> list[tuple[str, SynthesisLayer]]:
        """``[("conv0", layer), ("conv1", layer)]`` (only ``conv1`` for the 4x4 block)."""
        out = []
        if self.conv0 is not None:
            out.append(("conv0", self.conv0))
        out.append(("conv1", self.conv1))
        return out

    def forward(
        self,
        x: Tensor | None,
        img: Tensor | None,
        ws: Tensor,
        *,
        force_fp32: bool = False,
        noise_mode: str = "random",
        noise: Sequence[Tensor | None] = (None, None),
        generator: torch.Generator | None = None,
        fused_modconv: bool | None = None,
        kernels: LayerKernels | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Run the block.

        Parameters
        ----------
        x : Tensor or None
            ``[N, in_channels, r/2, r/2]`` features of the previous block (None for 4x4).
        img : Tensor or None
            ``[N, img_channels, r/2, r/2]`` float32 image so far (None for 4x4).
        ws : Tensor
            ``[N, num_conv + 1, w_dim]``: one w per convolution, then the toRGB w.
        force_fp32 : bool
            Run in float32 even if the block is a float16 block.
        noise_mode : str
            See :class:`SynthesisLayer`.
        noise : sequence of Tensor or None
            One override per convolution (``num_conv`` entries).
        generator : torch.Generator or None
            Random noise source.
        fused_modconv : bool or None
            Force the grouped per-sample-weight convolution (True) or the shared-weight one
            (False). None: the official rule, fused in eval mode for float32 or a batch of one.
            The shared-weight form needs no weight gradient, which makes it the faster one
            when only w and the noise maps are optimised.
        kernels : LayerKernels or None
            See :meth:`SynthesisLayer.forward`.

        Returns
        -------
        tuple of Tensor
            Features ``[N, out_channels, r, r]`` (block dtype) and the float32 image
            ``[N, img_channels, r, r]``.
        """
        n = ws.shape[0]
        dtype = torch.float16 if self.use_fp16 and not force_fp32 else torch.float32
        if fused_modconv is None:
            fused = (not self.training) and (dtype == torch.float32 or n == 1)
        else:
            fused = bool(fused_modconv)
        w_iter = iter(ws.unbind(dim=1))
        noise_iter = iter(noise)
        if x is None:
            x = self.const.to(dtype).unsqueeze(0).expand(n, -1, -1, -1)
        else:
            x = x.to(dtype)
        kw = {"noise_mode": noise_mode, "fused": fused, "generator": generator, "kernels": kernels}
        if self.conv0 is not None:
            x = self.conv0(x, next(w_iter), noise=next(noise_iter), **kw)
        x = self.conv1(x, next(w_iter), noise=next(noise_iter), **kw)
        if img is not None:
            img = _upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused=fused).to(torch.float32)
        img = img + y if img is not None else y
        return x, img

    def extra_repr(self) -> str:
        return f"res={self.resolution}, {self.in_channels} -> {self.out_channels}, fp16={self.use_fp16}"


# --------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------


class SynthesisNetwork(nn.Module):
    """Synthesis network: w vectors ``[N, num_ws, w_dim]`` -> image ``[N, C, R, R]``.

    Blocks are named ``b4``, ``b8``, ..., ``b{R}``. The block at resolution r consumes
    ``ws[:, i : i + num_conv + 1]`` where ``i`` counts the convolutions of the blocks below; its
    toRGB w is therefore shared with the next block's first convolution, as in the official code.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        log2 = config.img_resolution.bit_length() - 1
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        fp16_resolution = max(2 ** (log2 + 1 - config.num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_ch = config.channels(res // 2) if res > 4 else 0
            block = SynthesisBlock(
                in_ch,
                config.channels(res),
                w_dim=config.w_dim,
                resolution=res,
                img_channels=config.img_channels,
                use_fp16=res >= fp16_resolution,
                conv_clamp=config.conv_clamp,
            )
            self.num_ws += block.num_conv
            setattr(self, f"b{res}", block)
        self.num_ws += 1  # toRGB of the last block
        if self.num_ws != config.num_ws:  # pragma: no cover - guarded by construction
            raise ValueError(f"internal error: num_ws {self.num_ws} != config.num_ws {config.num_ws}")

    def blocks(self) -> list[SynthesisBlock]:
        """The blocks from 4x4 upwards."""
        return [getattr(self, f"b{res}") for res in self.block_resolutions]

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every block (N(0, 1) weights, zero biases and noise strengths)."""
        for block in self.blocks():
            block.reset_parameters(generator)

    def noise_layers(self) -> list[tuple[str, int]]:
        """Noise-injecting layers in synthesis order, as ``(name, resolution)``.

        Names are relative to the synthesis network, e.g. ``"b4.conv1"``, ``"b8.conv0"``.
        """
        return [
            (f"b{block.resolution}.{name}", block.resolution)
            for block in self.blocks()
            for name, _ in block.noise_layers()
        ]

    def _check_noise(self, noise: Sequence[Tensor], n: int) -> None:
        layers = self.noise_layers()
        if len(noise) != len(layers):
            raise ValueError(f"noise must have {len(layers)} maps (one per noise layer), got {len(noise)}")
        for t, (name, r) in zip(noise, layers, strict=True):
            if not isinstance(t, Tensor):
                raise TypeError(f"noise map for {name} must be a Tensor, got {type(t).__name__}")
            ok = (t.ndim == 2 and tuple(t.shape) == (r, r)) or (
                t.ndim == 4 and t.shape[0] in (1, n) and tuple(t.shape[1:]) == (1, r, r)
            )
            if not ok:
                raise ValueError(
                    f"noise map for {name} must have shape [{n} or 1, 1, {r}, {r}] or [{r}, {r}], got {list(t.shape)}"
                )

    def forward(
        self,
        ws: Tensor,
        *,
        noise_mode: str = "random",
        force_fp32: bool = False,
        noise: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
        fused_modconv: bool | None = None,
        kernels: LayerKernels | None = None,
    ) -> Tensor:
        """Synthesise images.

        Parameters
        ----------
        ws : Tensor
            ``[N, num_ws, w_dim]`` w vectors (float).
        noise_mode : {"random", "const", "none"}
            ``"random"``: fresh N(0, 1) maps drawn from ``generator``; ``"const"``: the stored
            ``noise_const`` buffers; ``"none"``: no noise.
        force_fp32 : bool
            Run every block in float32 (otherwise the ``num_fp16_res`` top blocks use float16).
        noise : sequence of Tensor or None
            One map per entry of :meth:`noise_layers`, each ``[N, 1, r, r]``, ``[1, 1, r, r]`` or
            ``[r, r]``; replaces the noise maps (still scaled by each layer's noise strength) and
            overrides ``noise_mode``. Differentiable.
        generator : torch.Generator or None
            Random source for ``noise_mode="random"``.
        fused_modconv : bool or None
            See :meth:`SynthesisBlock.forward` (None: the official rule).
        kernels : LayerKernels or None
            Faster code for the unfused layers (:data:`cleftscore.gan.accel.fused.FUSED_KERNELS`
            on a GPU); None: plain PyTorch everywhere. Same numbers up to float rounding.

        Returns
        -------
        Tensor
            ``[N, img_channels, R, R]`` float32 image, raw (not clamped; about -1..1 when trained).

        Raises
        ------
        ValueError
            On a bad ``ws`` shape, ``noise_mode`` or noise list.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must have shape [N, {self.num_ws}, {self.w_dim}], got {list(ws.shape)}")
        n = ws.shape[0]
        if noise is not None:
            self._check_noise(noise, n)
            noise_list: list[Tensor | None] = list(noise)
        else:
            noise_list = [None] * len(self.noise_layers())
        ws = ws.to(torch.float32)
        x = img = None
        w_idx = 0
        n_idx = 0
        for block in self.blocks():
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            block_noise = noise_list[n_idx : n_idx + block.num_conv]
            x, img = block(
                x,
                img,
                block_ws,
                force_fp32=force_fp32,
                noise_mode=noise_mode,
                noise=block_noise,
                generator=generator,
                fused_modconv=fused_modconv,
                kernels=kernels,
            )
            w_idx += block.num_conv
            n_idx += block.num_conv
        return img

    def extra_repr(self) -> str:
        return f"res={self.img_resolution}, num_ws={self.num_ws}, w_dim={self.w_dim}"


class MappingNetwork(nn.Module):
    """Mapping network: z ``[N, z_dim]`` -> ws ``[N, num_ws, w_dim]``.

    z is normalised by its second moment, passed through ``mapping_layers`` equalised-lr FC
    layers with leaky ReLU (lr multiplier ``mapping_lr_mul``), broadcast to ``num_ws`` copies
    and optionally truncated towards the ``w_avg`` buffer.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture.

    Notes
    -----
    Unlike the official training code, ``w_avg`` is never updated in ``forward`` (also not in
    training mode): it is a fixed property of the loaded checkpoint here.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.num_ws = config.num_ws
        self.num_layers = config.mapping_layers
        feats = [config.z_dim] + [config.w_dim] * config.mapping_layers
        for i in range(config.mapping_layers):
            layer = FullyConnectedLayer(feats[i], feats[i + 1], lrelu=True, lr_mul=config.mapping_lr_mul)
            setattr(self, f"fc{i}", layer)
        self.register_buffer("w_avg", torch.zeros(config.w_dim))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise the FC layers and zero ``w_avg``."""
        for i in range(self.num_layers):
            getattr(self, f"fc{i}").reset_parameters(generator)
        with torch.no_grad():
            self.w_avg.zero_()

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
    ) -> Tensor:
        """Map latents to w vectors.

        Parameters
        ----------
        z : Tensor
            ``[N, z_dim]``.
        c : None
            Class labels; only unconditional generators are supported (None or ``[N, 0]``).
        truncation_psi : float
            ``w <- w_avg + psi * (w - w_avg)``; 1 disables truncation.
        truncation_cutoff : int or None
            Truncate only ``ws[:, :cutoff]`` (None: all).

        Returns
        -------
        Tensor
            ``[N, num_ws, w_dim]`` float32.

        Raises
        ------
        ValueError
            On a bad ``z`` shape or a non-empty ``c``.
        """
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must have shape [N, {self.z_dim}], got {list(z.shape)}")
        _check_c(c)
        x = z.to(torch.float32)
        x = x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt()
        for i in range(self.num_layers):
            x = getattr(self, f"fc{i}")(x)
        x = x.unsqueeze(1).repeat(1, self.num_ws, 1)
        if truncation_psi != 1:
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:
                head = self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi)
                x = torch.cat([head, x[:, truncation_cutoff:]], dim=1)
        return x

    def extra_repr(self) -> str:
        return f"z_dim={self.z_dim}, w_dim={self.w_dim}, layers={self.num_layers}, num_ws={self.num_ws}"


def _check_c(c: Tensor | None) -> None:
    if c is not None and c.numel() != 0:
        raise ValueError(f"only unconditional generators are supported: c must be None, got shape {list(c.shape)}")


class Generator(nn.Module):
    """StyleGAN2 generator: mapping network followed by synthesis network.

    Parameters
    ----------
    config : GeneratorConfig
        Architecture (``cleftscore.gan.config.FFHQ1024`` for the FFHQ model).
    generator : torch.Generator or None
        Random source of the initial weights (the global one when None). Loaded checkpoints
        overwrite everything anyway.

    Examples
    --------
    >>> G = Generator(GeneratorConfig(img_resolution=32, z_dim=64, w_dim=64, mapping_layers=2,
    ...                               channel_base=512, channel_max=64)).eval()
    >>> G(torch.randn(2, 64), noise_mode="const").shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(self, config: GeneratorConfig, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        if not isinstance(config, GeneratorConfig):
            raise TypeError(f"config must be a GeneratorConfig, got {type(config).__name__}")
        self.config = config
        self.z_dim = config.z_dim
        self.w_dim = config.w_dim
        self.img_resolution = config.img_resolution
        self.img_channels = config.img_channels
        self.synthesis = SynthesisNetwork(config)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(config)
        if generator is not None:
            self.reset_parameters(generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise all weights from ``generator`` (``w_avg`` becomes 0)."""
        self.synthesis.reset_parameters(generator)
        self.mapping.reset_parameters(generator)

    def forward(
        self,
        z: Tensor,
        c: Tensor | None = None,
        *,
        truncation_psi: float = 1.0,
        truncation_cutoff: int | None = None,
        noise_mode: str = "random",
        force_fp32: bool = False,
        noise: Sequence[Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Generate images from latents.

        Parameters
        ----------
        z : Tensor
            ``[N, z_dim]`` latents.
        c : None
            Unsupported class labels (must be None or empty).
        truncation_psi, truncation_cutoff
            See :meth:`MappingNetwork.forward`.
        noise_mode, force_fp32, noise, generator
            See :meth:`SynthesisNetwork.forward`.

        Returns
        -------
        Tensor
            ``[N, img_channels, R, R]`` float32, raw (not clamped).
        """
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, force_fp32=force_fp32, noise=noise, generator=generator)

    def extra_repr(self) -> str:
        return f"res={self.img_resolution}, z_dim={self.z_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}"


# --------------------------------------------------------------------------------------------
# Config inference
# --------------------------------------------------------------------------------------------


def infer_config(
    state: dict[str, Tensor], *, num_fp16_res: int = 0, conv_clamp: float | None = None
) -> GeneratorConfig:
    """Infer the :class:`GeneratorConfig` of an official-key generator state dict from shapes.

    Parameters
    ----------
    state : dict of str to Tensor
        ``G_ema``-style state dict (``mapping.fc0.weight``, ``synthesis.b4.const``, ...). Arrays
        with a ``shape`` attribute (numpy) are accepted too.
    num_fp16_res : int
        Not visible in the shapes; passed through.
    conv_clamp : float or None
        Not visible in the shapes; passed through.

    Returns
    -------
    GeneratorConfig
        A config whose :class:`Generator` has exactly these shapes. ``channel_base`` is the
        smallest value consistent with all block widths and ``channel_max`` the widest block, so
        configs that build identical networks may come back with different (equivalent) numbers.
        ``mapping_lr_mul`` and ``w_avg_beta`` keep their defaults.

    Raises
    ------
    ValueError
        When required keys are missing or the shapes fit no StyleGAN2 ``skip`` generator.
    """

    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise ValueError(f"state dict has no {key!r}: not a StyleGAN2 generator state dict")
        return tuple(int(s) for s in state[key].shape)

    res_list = sorted({int(m.group(1)) for k in state if (m := re.match(r"synthesis\.b(\d+)\.", k))})
    if not res_list:
        raise ValueError("state dict has no 'synthesis.b*' entries: not a StyleGAN2 generator state dict")
    resolution = res_list[-1]
    expected = [2**i for i in range(2, resolution.bit_length())]
    if res_list != expected:
        raise ValueError(f"synthesis blocks {res_list} are not the full chain 4..{resolution}")
    fc_ids = sorted({int(m.group(1)) for k in state if (m := re.match(r"mapping\.fc(\d+)\.weight$", k))})
    if not fc_ids or fc_ids != list(range(len(fc_ids))):
        raise ValueError(f"mapping layers must be fc0..fcN, found fc{fc_ids}")
    z_dim = shape("mapping.fc0.weight")[1]
    w_dim = shape(f"mapping.fc{fc_ids[-1]}.weight")[0]
    for i in fc_ids:
        want = (w_dim, z_dim if i == 0 else w_dim)
        if shape(f"mapping.fc{i}.weight") != want:
            raise ValueError(f"mapping.fc{i}.weight has shape {shape(f'mapping.fc{i}.weight')}, expected {want}")
    img_channels = shape(f"synthesis.b{resolution}.torgb.weight")[0]
    chans = {res: shape(f"synthesis.b{res}.conv1.weight")[0] for res in res_list}

    channel_max = max(chans.values())
    lo, hi = 1, None  # channel_base range from unsaturated resolutions: c = base // r
    for res, c in chans.items():
        if c < channel_max:
            lo = max(lo, c * res)
            hi = c * res + res - 1 if hi is None else min(hi, c * res + res - 1)
        else:
            lo = max(lo, c * res)  # saturated: base // r >= channel_max
    if hi is not None and lo > hi:
        raise ValueError(f"block widths {chans} fit no channel_base/channel_max pair")
    cfg = GeneratorConfig(
        z_dim=z_dim,
        w_dim=w_dim,
        img_resolution=resolution,
        img_channels=img_channels,
        mapping_layers=len(fc_ids),
        channel_base=lo,
        channel_max=channel_max,
        num_fp16_res=num_fp16_res,
        conv_clamp=conv_clamp,
    )
    got = {res: cfg.channels(res) for res in res_list}
    if got != chans:
        raise ValueError(f"block widths {chans} fit no channel_base/channel_max pair (closest gives {got})")
    return cfg
