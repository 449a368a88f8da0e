"""``cleftscore reference``: a normative reference built from a clinic's own normal photos."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, user_errors
from cleftscore.cli.options import (
    AdaptStepsOpt,
    AsymmetryScore,
    AsymScoreOpt,
    Detector,
    DetectorOpt,
    DeviceOpt,
    GeneratorOpt,
    Loss,
    LossOpt,
    Method,
    Roi,
    RoiOpt,
    SizeOpt,
    StepsOpt,
    Vgg16Opt,
)
from cleftscore.errors import CleftscoreError

__all__ = ["check_reference", "reference_app"]

reference_app = typer.Typer(
    no_args_is_help=True,
    help="Normative references: where a score falls among normal faces (percentile, z, reading).",
)
app.add_typer(reference_app, name="reference")


def check_reference(path: Path | None, method: str, score_settings) -> None:  # noqa: ANN001 - ScoreSettings
    """Fail with one line, before any photo is scored, when ``--reference`` cannot serve this run.

    Raises
    ------
    CleftscoreError
        The file cannot be read, is not a reference, or was built for another method or score.
    """
    if path is None:
        return
    from cleftscore.score.reference import reference_for

    kind = "face-referenced" if score_settings.face_referenced(method) else "paper"
    try:
        reference_for(method, kind, str(path))
    except (OSError, ValueError) as exc:
        raise CleftscoreError(f"--reference {path}: {exc}") from None


def _score_settings_of(kind: str, settings) -> dict:  # noqa: ANN001 - PipelineSettings
    """The settings that make the score a reference describes (the face-referenced score has its own)."""
    if kind == "face-referenced":
        from cleftscore.score.asymmetry import AsymmetrySettings

        return AsymmetrySettings().to_dict()
    return settings.to_dict()


@reference_app.command("build")
def build(
    photos: Annotated[list[Path], typer.Argument(help="Normal face photos, or folders of them (at least 10 faces).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The reference JSON to write.")],
    method: Annotated[Method, typer.Option("--method", help="Normalizer the reference is for.")] = Method.asymmetry,
    name: Annotated[
        str | None, typer.Option("--name", help="Short name shown beside every reading (default: the file's name).")
    ] = None,
    source: Annotated[
        str, typer.Option("--source", help="Who is in it, in words (age, sex, ethnicity, camera...).")
    ] = "",
    roi: RoiOpt = Roi.mouth,
    asymmetry_score: AsymScoreOpt = AsymmetryScore.face_referenced,
    generator: GeneratorOpt = None,
    vgg16: Vgg16Opt = None,
    steps: StepsOpt = 2000,
    adapt_steps: AdaptStepsOpt = 50,
    loss: LossOpt = Loss.lpips,
    device: DeviceOpt = "auto",
    size: SizeOpt = None,
    detector: DetectorOpt = Detector.hog,
) -> None:
    """Score normal photos and write where their scores lie: percentiles, a z scale and the heat map's normal spread.

    Any method, the GAN one included (with your own weights: --generator). The file holds
    statistics only, never a photo, a crop or one photo's number. Use it with --reference on
    score, study score and serve; the score settings must be the ones the reference was built with.
    """
    import numpy as np

    from cleftscore.cli.options import ColorSpace, Metric
    from cleftscore.cli.score import _score_settings
    from cleftscore.io import write_json
    from cleftscore.normalize.gan import GanSettings
    from cleftscore.run.pipeline import score_photos
    from cleftscore.run.settings import PipelineSettings
    from cleftscore.score.reference import ReferenceBuilder

    with user_errors():
        try:
            score = _score_settings(roi, None, Metric.pse, ColorSpace.ycbcr, 3, asymmetry_score, None)
            settings = PipelineSettings(method=method.value, size=size, detector=detector.value, score=score,
                                        gan=GanSettings(generator=generator, vgg16=vgg16, steps=steps,
                                                        adapt_steps=adapt_steps, loss=loss.value, device=device))  # fmt: skip
        except ValueError as exc:
            raise CleftscoreError(f"invalid option: {exc}") from None
        kind = "face-referenced" if score.face_referenced(method.value) else "paper"
        builder = ReferenceBuilder(method=method.value, score=kind)
        console.print(f"Scoring the normal photos with the {method.value} method (nothing is saved but statistics)")
        failed = 0
        for res in score_photos(list(photos), settings, keep_images=True):
            if not res.ok or res.heatmap is None or res.geometry is None or res.mask is None:
                failed += 1
                continue
            builder.add(float(res.score), res.heatmap, np.asarray(res.geometry.landmarks_aligned), res.mask)
        if failed:
            err_console.print(f"{failed} photo(s) could not be scored and are left out")
        text = source or f"{len(builder)} normal photos given to `cleftscore reference build`"
        try:
            ref = builder.build(source=text, settings=_score_settings_of(kind, settings), name=name or out.stem)
        except ValueError as exc:
            raise CleftscoreError(str(exc)) from None
        write_json(out, ref.to_dict())
        q = ref.quantiles
        console.print(f"Wrote {out}: '{ref.name}', {ref.n} normal photos, median score {q[50]:.3f} "
                      f"(16th-84th percentile {q[16]:.3f} to {q[84]:.3f})")  # fmt: skip
