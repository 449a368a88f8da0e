"""Architecture settings of a StyleGAN2 generator (the official ``G_ema`` init kwargs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["GeneratorConfig", "FFHQ1024"]


_UPPER_BOUNDS = {
    "z_dim": 4096,
    "w_dim": 4096,
    "img_channels": 4,
    "mapping_layers": 32,
    "channel_base": 1 << 20,
    "channel_max": 4096,
}


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything needed to build a :class:`cleftscore.gan.networks.Generator`.

    Field names follow NVIDIA's stylegan2-ada-pytorch init kwargs, so a config can be read from
    an official pickle's ``_init_kwargs`` without translation.

    Parameters
    ----------
    z_dim, w_dim : int
        Latent sizes (512 for FFHQ).
    img_resolution : int
        Output resolution, a power of two from 4 to 1024.
    img_channels : int
        Output channels (3).
    mapping_layers : int
        Number of fully connected layers in the mapping network (8 for FFHQ).
    mapping_lr_mul : float
        Learning-rate multiplier of the mapping layers (0.01).
    w_avg_beta : float
        Decay of the running ``w_avg`` during training (0.995); kept for completeness.
    channel_base, channel_max : int
        Channels at resolution r are ``min(channel_base // r, channel_max)``.
    num_fp16_res : int
        How many of the highest resolutions run in float16 (on CUDA; CPU too when asked).
    conv_clamp : float or None
        Clamp of convolution outputs (256 for FFHQ), ``None`` for no clamp.
    """

    z_dim: int = 512
    w_dim: int = 512
    img_resolution: int = 1024
    img_channels: int = 3
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    channel_base: int = 32768
    channel_max: int = 512
    num_fp16_res: int = 4
    conv_clamp: float | None = 256

    def __post_init__(self) -> None:
        r = self.img_resolution
        if r < 4 or r > 4096 or r & (r - 1):
            raise ValueError(f"img_resolution must be a power of two from 4 to 4096, got {r}")
        # Configs come from untrusted files too: the bounds keep a claimed architecture from
        # costing more memory or time than any real StyleGAN2 (FFHQ: 512, 8, 32768, 512).
        for name, top in _UPPER_BOUNDS.items():
            value = int(getattr(self, name))
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}")
            if value > top:
                raise ValueError(f"{name} must be at most {top}, got {value}")
        if self.num_fp16_res < 0 or self.num_fp16_res > 11:
            raise ValueError(f"num_fp16_res must be from 0 to 11, got {self.num_fp16_res}")

    @property
    def num_ws(self) -> int:
        """Number of w vectors the synthesis network consumes (18 at 1024)."""
        log2 = self.img_resolution.bit_length() - 1
        return 2 * log2 - 2

    def channels(self, res: int) -> int:
        """Channel count of the block at resolution ``res``."""
        return min(self.channel_base // res, self.channel_max)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        """Build from a dict, rejecting unknown keys with a clear message."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**data)


#: NVIDIA's FFHQ 1024x1024 StyleGAN2 (config F, as in stylegan2-ada-pytorch ``ffhq.pkl``).
FFHQ1024 = GeneratorConfig()
