"""Triton kernels behind :mod:`cleftscore.gan.accel.fused` (imported only where Triton is installed).

All tensors are contiguous NCHW, viewed as ``[rows = N * C, HW]``; per-row scalars (demodulation
coefficients, styles) are float32 ``[N * C]``; arithmetic is float32, stores round to the output
dtype. Reductions write one partial sum per (row, block) and the caller adds them up, so results
do not depend on the order blocks run in (no atomics).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def demod_act_fwd(y_ptr, d_ptr, noise_ptr, b_ptr, out_ptr, C, HW, noise_stride_n, clamp, slope,
                  HAS_NOISE: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """out = clamp(lrelu(y * d[row] + noise[n] + b[c])); grid (N * C, cdiv(HW, BLOCK))."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    n = row // C
    c = row % C
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    base = row.to(tl.int64) * HW
    y = tl.load(y_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
    v = y * tl.load(d_ptr + row) + tl.load(b_ptr + c)
    if HAS_NOISE:
        v += tl.load(noise_ptr + n.to(tl.int64) * noise_stride_n + offs, mask=mask, other=0.0).to(tl.float32)
    a = tl.where(v > 0, v, v * slope)
    if HAS_CLAMP:
        # NaN stays NaN, as in torch.clamp (plain min/max would turn it into -clamp)
        a = tl.clamp(a, -clamp, clamp, propagate_nan=tl.PropagateNan.ALL)
    tl.store(out_ptr + base + offs, a.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def demod_act_bwd(g_ptr, y_ptr, d_ptr, noise_ptr, b_ptr, gy_ptr, gd_part_ptr, gb_part_ptr, gnoise_ptr,
                  C, HW, NBLK, C_PER, noise_stride_n, clamp, slope,
                  HAS_NOISE: tl.constexpr, HAS_CLAMP: tl.constexpr, BLOCK: tl.constexpr):  # fmt: skip
    """Backward of :func:`demod_act_fwd`; grid (N, cdiv(HW, BLOCK), G), a loop over C_PER channels.

    Channel group ``g`` covers channels ``[g * C_PER, (g + 1) * C_PER)``. Writes grad_y, partial
    sums per (row, block) of grad_d (sum gv * y) and grad_b (sum gv), and per (image, group) the
    noise gradient (sum over the group's channels) at ``gnoise[n, g, hw]``.
    """
    n = tl.program_id(0)
    blk = tl.program_id(1)
    grp = tl.program_id(2)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    if HAS_NOISE:
        nz = tl.load(noise_ptr + n.to(tl.int64) * noise_stride_n + offs, mask=mask, other=0.0).to(tl.float32)
    else:
        nz = tl.zeros([BLOCK], dtype=tl.float32)
    acc = tl.zeros([BLOCK], dtype=tl.float32)
    c0 = grp * C_PER
    for c in range(c0, tl.minimum(c0 + C_PER, C)):
        row = n * C + c
        base = row.to(tl.int64) * HW
        d = tl.load(d_ptr + row)
        y = tl.load(y_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        g = tl.load(g_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
        v = y * d + tl.load(b_ptr + c) + nz
        gv = tl.where(v > 0, g, g * slope)
        if HAS_CLAMP:
            a = tl.where(v > 0, v, v * slope)
            gv = tl.where((a > -clamp) & (a < clamp), gv, 0.0)
        gv = tl.where(mask, gv, 0.0)
        tl.store(gy_ptr + base + offs, (gv * d).to(gy_ptr.dtype.element_ty), mask=mask)
        part = row.to(tl.int64) * NBLK + blk
        tl.store(gd_part_ptr + part, tl.sum(gv * y, axis=0))
        tl.store(gb_part_ptr + part, tl.sum(gv, axis=0))
        acc += gv
    if HAS_NOISE:
        tl.store(gnoise_ptr + (n * tl.num_programs(2) + grp).to(tl.int64) * HW + offs, acc, mask=mask)


@triton.jit
def scale_channels_bwd(g_ptr, x_ptr, s_ptr, gx_ptr, gs_part_ptr, HW, NBLK, BLOCK: tl.constexpr):
    """grad_x = g * s[row] and partial sums of grad_s = sum g * x; grid (N * C, cdiv(HW, BLOCK))."""
    row = tl.program_id(0)
    blk = tl.program_id(1)
    offs = blk * BLOCK + tl.arange(0, BLOCK)
    mask = offs < HW
    base = row.to(tl.int64) * HW
    s = tl.load(s_ptr + row)
    g = tl.load(g_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + base + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(gx_ptr + base + offs, (g * s).to(gx_ptr.dtype.element_ty), mask=mask)
    tl.store(gs_part_ptr + row.to(tl.int64) * NBLK + blk, tl.sum(g * x, axis=0))
