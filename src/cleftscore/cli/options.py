"""Option types shared by the commands: choices as enums, and each option's flag and help once.

A command names an option by its type (``roi: RoiOpt = Roi.mouth``), so ``score``, ``rescore``,
``study score`` and ``serve`` offer the same flag with the same help and checks.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer


class Method(str, Enum):
    gan = "gan"
    asymmetry = "asymmetry"


class Roi(str, Enum):
    mouth = "mouth"
    face = "face"
    full = "full"


class Metric(str, Enum):
    pse = "pse"
    ssim = "ssim"
    lpips = "lpips"


class ColorSpace(str, Enum):
    ycbcr = "ycbcr"
    rgb = "rgb"


class Detector(str, Enum):
    hog = "hog"
    haar = "haar"


class Loss(str, Enum):
    lpips = "lpips"
    mse = "mse"


class AsymmetryScore(str, Enum):
    face_referenced = "face-referenced"
    paper = "paper"


class HigherIs(str, Enum):
    normal = "normal"
    abnormal = "abnormal"


class Precision(str, Enum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


SCORING = "Scoring"
GAN = "GAN normalizer"
RAY = "Many GPUs and nodes (Ray)"

RoiOpt = Annotated[
    Roi,
    typer.Option(
        "--roi",
        help="Region of the paper's S: mouth+nose (paper), face without eyes, or the full image. The asymmetry method's face-referenced score always takes the upper-lip skin (or --mask); S over --roi is then its paper_S column.",
        rich_help_panel=SCORING,
    ),
]
MaskOpt = Annotated[
    Path | None,
    typer.Option(
        "--mask",
        help="Mask image (white = inside), overrides --roi (and the face-referenced score's region).",
        rich_help_panel=SCORING,
    ),
]
AsymScoreOpt = Annotated[
    AsymmetryScore,
    typer.Option(
        "--asymmetry-score",
        help="What the asymmetry method's score column is: the face-referenced score (default; docs/asymmetry_score.md) or the paper's S of the face against its mirror (earlier versions).",
        rich_help_panel=SCORING,
    ),
]
HeatmapMaxOpt = Annotated[
    float | None,
    typer.Option(
        "--heatmap-max",
        help="Top of the heat maps' colour scale, the same for every photo (default: the method's standard scale, in result.json as heatmap_max).",
        rich_help_panel=SCORING,
    ),
]
MetricOpt = Annotated[
    Metric,
    typer.Option(
        "--metric", help="Difference map: squared pixel error (paper), 1-SSIM, or LPIPS.", rich_help_panel=SCORING
    ),
]
ColorOpt = Annotated[
    ColorSpace,
    typer.Option("--colorspace", help="Colour space of the difference (paper: YCbCr).", rich_help_panel=SCORING),
]
ErosionOpt = Annotated[
    int, typer.Option("--erosion", min=0, help="Grey erosion window (paper: 3); 0 = off.", rich_help_panel=SCORING)
]
Vgg16Opt = Annotated[
    str | None,
    typer.Option(
        "--vgg16",
        help="VGG16 weights for LPIPS (path); default: $CLEFTSCORE_VGG16 or the weights cache.",
        rich_help_panel=GAN,
    ),
]


CalibrateOpt = Annotated[
    Path | None,
    typer.Option(
        "--calibrate",
        help="Ratings CSV (file,rating) of some of these photos: adds a calibrated rating and a 0-100 severity to every photo.",
        rich_help_panel=SCORING,
    ),
]
HigherIsOpt = Annotated[
    HigherIs,
    typer.Option(
        "--higher-is",
        help="What a high rating means in --calibrate's file: normal (paper: 7 = normal) or abnormal.",
        rich_help_panel=SCORING,
    ),
]


GeneratorOpt = Annotated[
    str | None,
    typer.Option(
        "--generator",
        help="Generator: registry name (ffhq) or checkpoint path; default: $CLEFTSCORE_GENERATOR or the cached ffhq.",
        rich_help_panel=GAN,
    ),
]
StepsOpt = Annotated[int, typer.Option("--steps", min=1, help="Inversion steps (paper: 2000).", rich_help_panel=GAN)]
AdaptStepsOpt = Annotated[
    int,
    typer.Option(
        "--adapt-steps",
        min=0,
        help="Adaptation steps (paper: 50; more steps bring the cleft back).",
        rich_help_panel=GAN,
    ),
]
LossOpt = Annotated[
    Loss,
    typer.Option(
        "--loss", help="Image loss of the GAN steps: lpips (paper) or mse (no VGG16 needed).", rich_help_panel=GAN
    ),
]
BatchOpt = Annotated[
    int, typer.Option("--batch", min=1, help="Photos per GAN batch on the device.", rich_help_panel=GAN)
]
DeviceOpt = Annotated[str, typer.Option("--device", help="auto, cpu, cuda or cuda:N.", rich_help_panel=GAN)]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed of every random draw.")]
SizeOpt = Annotated[
    int | None,
    typer.Option("--size", help="Aligned face size (default: the generator's resolution; 1024 for asymmetry)."),
]
DetectorOpt = Annotated[Detector, typer.Option("--detector", help="Face detector.")]
CacheDirOpt = Annotated[
    Path | None, typer.Option("--cache-dir", help="Cache of GAN normalizations (default: the user cache).")
]
ReferenceOpt = Annotated[
    Path | None,
    typer.Option(
        "--reference",
        help="Normative reference JSON (`cleftscore reference build`) that scores are placed against: percentile, z and reading. Default: the shipped one (normal adults) for the asymmetry method's face-referenced score; none for other scores.",
    ),
]
