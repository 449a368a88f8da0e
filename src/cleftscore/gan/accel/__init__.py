"""Speed machinery beside the reference generator: fused Triton kernels for the synthesis layers.

:mod:`cleftscore.gan.accel.fused` holds the custom operators and :data:`FUSED_KERNELS`, which a
caller hands to the synthesis network's ``forward``; :mod:`cleftscore.gan.accel.triton_kernels`
the Triton kernels behind them (imported only where Triton is installed). Nothing here changes
what the network computes beyond float rounding, and :mod:`cleftscore.gan.networks` never
imports this package.
"""
