"""LPIPS perceptual distance (VGG16 trunk) for inversion, adaptation and heat maps.

Inputs are float images ``[N, 3, H, W]`` in [-1, 1]; the result is ``[N]`` distances, or an
``[N, 1, H, W]`` map with ``spatial=True``. Higher means *more different*; an image is at
distance 0 from itself.

The network is the ``lpips`` package's LPIPS v0.1 with the VGG16 trunk. Its linear heads ship
inside the ``lpips`` package; the VGG16 ImageNet trunk is torchvision's ``vgg16-397923af.pth``,
which the user fetches once (``cleftscore weights fetch vgg16``) and which we load ourselves,
strictly, so that nothing is ever downloaded here.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from cleftscore.errors import CheckpointError, WeightsMissingError

__all__ = ["PerceptualDistance", "area_downsample", "load_vgg16_state_dict", "vgg16_feature_shapes"]

logger = logging.getLogger(__name__)

#: Indices of the conv layers of torchvision's ``vgg16().features`` and the LPIPS slice holding each.
_VGG_CONV_SLICES = {0: 1, 2: 1, 5: 2, 7: 2, 10: 3, 12: 3, 14: 3, 17: 4, 19: 4, 21: 4, 24: 5, 26: 5, 28: 5}
#: torchvision's VGG16 ``features``: output channels of each 3x3 convolution, ``"M"`` a max-pool.
_VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16_feature_shapes() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of torchvision VGG16's ``features`` convolutions."""
    shapes: dict[str, tuple[int, ...]] = {}
    cin, idx = 3, 0
    for v in _VGG16_CFG:
        if v == "M":
            idx += 1
            continue
        shapes[f"features.{idx}.weight"] = (v, cin, 3, 3)
        shapes[f"features.{idx}.bias"] = (v,)
        cin, idx = v, idx + 2
    return shapes


def area_downsample(images: Tensor, *, size: int | None) -> Tensor:
    """Area-downsample square images to ``size`` when they are larger (the official projector's way).

    Parameters
    ----------
    images : Tensor
        ``[N, C, H, W]``.
    size : int or None
        Target side; ``None`` or a size >= H leaves the images unchanged.

    Returns
    -------
    Tensor
        ``[N, C, size, size]`` or the input itself.
    """
    if size is None or images.shape[-1] <= size and images.shape[-2] <= size:
        return images
    return F.interpolate(images, size=(size, size), mode="area")


def load_vgg16_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Load torchvision's VGG16 ImageNet state dict safely and check every key and shape.

    Parameters
    ----------
    path : str or Path
        ``vgg16-397923af.pth`` (a ``torch.save``-d state dict).

    Returns
    -------
    dict of str to Tensor
        The state dict, on the CPU.

    Raises
    ------
    WeightsMissingError
        If the file does not exist.
    CheckpointError
        If the file cannot be read safely or is not a VGG16 state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(
            f"VGG16 weights for LPIPS not found at {path}: run `cleftscore weights fetch vgg16` or pass --vgg16 PATH"
        )
    from cleftscore.gan.checkpoints import check_torch_zip

    check_torch_zip(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to unpickle is a bad file
        raise CheckpointError(
            f"{path}: not a readable PyTorch state dict ({type(exc).__name__}); re-fetch it"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a VGG16 state dict of tensors; re-fetch it")
    # LPIPS uses only the convolutional trunk: torchvision's full file (with the classifier)
    # and a trunk-only file are both accepted; every trunk tensor must be there and fit.
    expected = vgg16_feature_shapes()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in state if not (k in expected or k.startswith("classifier.")))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: not torchvision's VGG16 state dict (missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''}); re-fetch it"
        )
    for key, shape in expected.items():
        if tuple(state[key].shape) != shape:
            raise CheckpointError(f"{path}: {key} has shape {tuple(state[key].shape)}, expected {shape}")
    state = {k: state[k] for k in expected}
    return state


def _lpips_heads_path() -> Path:
    import lpips

    return Path(lpips.__file__).resolve().parent / "weights" / "v0.1" / "vgg.pth"


class PerceptualDistance(torch.nn.Module):
    """LPIPS v0.1 (VGG16) distance between images in [-1, 1]; higher = more different.

    Parameters
    ----------
    vgg16_weights : str, Path or None
        torchvision's VGG16 ImageNet state dict file. ``None`` requires ``random_trunk=True``.
    spatial : bool
        Return an ``[N, 1, H, W]`` distance map (at the input resolution) instead of ``[N]``.
    resize_to : int or None
        Inputs larger than this are area-downsampled to it first (256, as the official
        projector); ``None`` keeps the input size.
    random_trunk : bool
        Use a randomly initialised VGG16 trunk (tests and benchmarks only; never chosen silently).
    generator : torch.Generator or None
        Randomness of the random trunk (default: a generator seeded with 0).

    Raises
    ------
    WeightsMissingError
        If no VGG16 weights are given and ``random_trunk`` is False.
    CheckpointError
        If the VGG16 file or the bundled LPIPS heads are not what they should be.

    Notes
    -----
    The network is frozen (no parameter requires grad) and always in eval mode; gradients flow to
    the inputs. NVIDIA's projector feeds its own TorchScript VGG16 with images in [0, 255]; here the
    ``lpips`` package's network takes [-1, 1], so loss values differ in scale from NVIDIA's, while
    the distance is the same LPIPS up to that constant preprocessing.
    """

    def __init__(
        self,
        *,
        vgg16_weights: str | Path | None,
        spatial: bool = False,
        resize_to: int | None = 256,
        random_trunk: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if vgg16_weights is None and not random_trunk:
            raise WeightsMissingError(
                "VGG16 weights for LPIPS are missing: run `cleftscore weights fetch vgg16` or pass --vgg16 PATH"
            )
        if vgg16_weights is not None and random_trunk:
            raise ValueError("pass either vgg16_weights or random_trunk=True, not both")
        if resize_to is not None and resize_to < 16:
            raise ValueError(f"resize_to must be >= 16 or None, got {resize_to}")
        self.spatial = bool(spatial)
        self.resize_to = resize_to
        self.random_trunk = bool(random_trunk)
        trunk_state = load_vgg16_state_dict(vgg16_weights) if vgg16_weights is not None else None

        import lpips

        # Build the structure on the meta device (no download, no RNG, no 100M-parameter init),
        # then fill every tensor ourselves below.
        with torch.device("meta"), warnings.catch_warnings(), contextlib.redirect_stdout(None):
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False, spatial=False)
        net = net.to_empty(device="cpu")
        net.scaling_layer = lpips.lpips.ScalingLayer()
        self.net = net

        heads_path = _lpips_heads_path()
        try:
            heads = torch.load(heads_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001
            raise CheckpointError(
                f"{heads_path}: LPIPS heads unreadable ({type(exc).__name__}); reinstall lpips"
            ) from None
        for i in range(5):
            key = f"lin{i}.model.1.weight"
            if key not in heads or heads[key].shape != net.lins[i].model[1].weight.shape:
                raise CheckpointError(f"{heads_path}: LPIPS head {key} missing or of wrong shape; reinstall lpips")
            with torch.no_grad():
                net.lins[i].model[1].weight.copy_(heads[key])

        with torch.no_grad():
            if trunk_state is not None:
                for idx, sl in _VGG_CONV_SLICES.items():
                    conv = getattr(getattr(net.net, f"slice{sl}"), str(idx))
                    conv.weight.copy_(trunk_state[f"features.{idx}.weight"])
                    conv.bias.copy_(trunk_state[f"features.{idx}.bias"])
            else:
                gen = generator if generator is not None else torch.Generator().manual_seed(0)
                for idx, sl in _VGG_CONV_SLICES.items():
                    conv = getattr(getattr(net.net, f"slice{sl}"), str(idx))
                    # torchvision's VGG init: kaiming normal, fan_out, relu; zero bias.
                    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
                    std = (2.0 / fan_out) ** 0.5
                    w = torch.randn(conv.weight.shape, generator=gen, device=gen.device) * std
                    conv.weight.copy_(w.to(conv.weight.device))
                    conv.bias.zero_()
        for p in self.parameters():
            p.requires_grad_(False)
        self.net.eval()

    def train(self, mode: bool = True) -> PerceptualDistance:
        """Keep the frozen network in eval mode whatever is asked (no dropout)."""
        super().train(mode)
        self.net.eval()
        return self

    @staticmethod
    def _check(x: Tensor, name: str) -> None:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must be [N, 3, H, W] images in [-1, 1], got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise ValueError(f"{name} must be float in [-1, 1], got dtype {x.dtype}")

    def features(self, images: Tensor) -> list[Tensor]:
        """Unit-normalised VGG16 features of ``images`` (``[N, 3, H, W]`` in [-1, 1]).

        Compute these once for a fixed target and pass them to :meth:`distance_to_features`
        to save a third of the work per optimisation step.
        """
        self._check(images, "images")
        import lpips

        x = area_downsample(images, size=self.resize_to)
        outs = self.net.net(self.net.scaling_layer(x))
        return [lpips.normalize_tensor(o) for o in outs]

    def distance_to_features(self, target_features: list[Tensor], images: Tensor) -> Tensor:
        """LPIPS between precomputed target features and ``images``.

        Returns ``[N]`` distances, or an ``[N, 1, H, W]`` map when the module is spatial.
        """
        feats = self.features(images)
        if len(feats) != len(target_features):
            raise ValueError("target_features must come from PerceptualDistance.features")
        out_hw = images.shape[-2:]
        total: Tensor | None = None
        for lin, f0, f1 in zip(self.net.lins, target_features, feats, strict=True):
            if f0.shape != f1.shape:
                raise ValueError(
                    f"feature shapes differ: {tuple(f0.shape)} vs {tuple(f1.shape)}; same image sizes needed"
                )
            d = lin((f0 - f1).square())
            if self.spatial:
                d = F.interpolate(d, size=tuple(out_hw), mode="bilinear", align_corners=False)
            else:
                d = d.mean(dim=(2, 3), keepdim=True)
            total = d if total is None else total + d
        assert total is not None
        return total if self.spatial else total.reshape(-1)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        """LPIPS distance between ``x`` and ``y`` (both ``[N, 3, H, W]`` in [-1, 1]).

        Returns
        -------
        Tensor
            ``[N]`` distances, or ``[N, 1, H, W]`` maps (input resolution) when spatial.
        """
        self._check(x, "x")
        self._check(y, "y")
        if x.shape != y.shape:
            raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and {tuple(y.shape)}")
        return self.distance_to_features(self.features(x), y)
