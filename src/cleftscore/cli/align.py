"""``cleftscore align``: photos in, FFHQ-aligned faces, landmarks and previews out."""

from __future__ import annotations

import csv
import json
import logging
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console
from cleftscore.errors import CleftscoreError

logger = logging.getLogger(__name__)


class DetectorChoice(str, Enum):
    hog = "hog"
    haar = "haar"


def _record(prepared, size: int, detector: str) -> dict:  # noqa: ANN001 - PreparedPhoto, imported lazily
    a = prepared.aligned
    return {
        "file": prepared.name,
        "size": size,
        "detector": detector,
        "n_faces": prepared.n_faces,
        "box": prepared.box.as_dict(),
        "score": float(prepared.box.score),
        "notes": list(prepared.notes),
        "original_shape": list(a.original_shape),
        "to_original": a.to_original.tolist(),
        "quad_original": a.quad_original.round(3).tolist(),
        "landmarks_aligned": a.landmarks.round(3).tolist(),
        "landmarks_original": a.landmarks_original.round(3).tolist(),
        "coordinates": "pixel (x, y), x right, y down, pixel centres at integers; "
        "to_original maps aligned (x, y, 1) to photo (x, y, 1)",
    }


@app.command("align")
def align_command(
    photos: Annotated[
        list[Path],
        typer.Argument(help="Photo files or folders of photos (JPEG, PNG, TIFF, BMP, WebP).", show_default=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder (created if missing).")],
    size: Annotated[
        int, typer.Option(help="Side of the aligned face in pixels, a power of two (generator resolution).")
    ] = 1024,
    detector: Annotated[
        DetectorChoice, typer.Option(help="Face detector: dlib HOG, or OpenCV Haar as a fallback.")
    ] = DetectorChoice.hog,
) -> None:
    """Find, landmark and align the face in each photo exactly as the FFHQ data set was made.

    For each photo writes [bold]<name>_aligned.png[/bold] (the aligned face),
    [bold]<name>_align.json[/bold] (landmarks in both frames, the aligned-to-photo matrix, the
    face box and detector score, notes) and [bold]<name>_preview.png[/bold] (box, landmarks,
    aligned square and the mouth/face regions drawn on the photo), plus [bold]summary.csv[/bold]
    with one row per photo (file, status, faces_found, message).

    A photo that fails (unreadable, no face) gets one red line and the batch goes on.
    Exit code: 0 when at least one photo was aligned, 1 when none was (or on bad options).
    """
    from cleftscore.face.prepare import prepare_photo, render_preview
    from cleftscore.io import save_image

    if size < 16 or size & (size - 1):
        err_console.print(f"[red]error:[/red] --size must be a power of two >= 16 (e.g. 256, 1024), got {size}")
        raise typer.Exit(code=1)
    from cleftscore.run.inputs import expand_inputs, photo_ids

    files = expand_inputs(photos)
    if not files:
        err_console.print("[red]error:[/red] no photo files found in the given paths")
        raise typer.Exit(code=1)
    out.mkdir(parents=True, exist_ok=True)
    stems = photo_ids(files)
    rows: list[dict[str, str | int]] = []
    n_ok = 0
    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=True,
    )
    with progress:
        task = progress.add_task("aligning", total=len(files))
        for path, stem in zip(files, stems, strict=True):
            progress.update(task, description=f"aligning {path.name}")
            try:
                prepared = prepare_photo(path, size=size, detector=detector.value)
                save_image(out / f"{stem}_aligned.png", prepared.aligned.image)
                save_image(out / f"{stem}_preview.png", render_preview(prepared))
                (out / f"{stem}_align.json").write_text(
                    json.dumps(_record(prepared, size, detector.value), indent=1), encoding="utf-8"
                )
            except CleftscoreError as exc:
                progress.console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
                rows.append({"file": str(path), "status": "failed", "faces_found": 0, "message": str(exc)})
            except OSError as exc:  # writing outputs
                msg = f"{path}: could not write outputs to {out} ({exc.strerror or exc})"
                progress.console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
                rows.append({"file": str(path), "status": "failed", "faces_found": 0, "message": msg})
            except Exception as exc:  # noqa: BLE001 - a bug on one photo must not stop the batch
                logger.debug("unexpected error on %s", path, exc_info=True)
                msg = f"{path}: unexpected error ({type(exc).__name__}: {exc}); please report it"
                progress.console.print(f"[red]error:[/red] {msg}", highlight=False, soft_wrap=True)
                rows.append({"file": str(path), "status": "failed", "faces_found": 0, "message": msg})
            else:
                n_ok += 1
                rows.append(
                    {
                        "file": str(path),
                        "status": "ok",
                        "faces_found": prepared.n_faces,
                        "message": "; ".join(prepared.notes),
                    }
                )
                for note in prepared.notes:
                    progress.console.print(f"[yellow]note:[/yellow] {path}: {note}", highlight=False, soft_wrap=True)
            progress.advance(task)
    with open(out / "summary.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "status", "faces_found", "message"])
        writer.writeheader()
        writer.writerows(rows)
    n_failed = len(files) - n_ok
    failed_note = f"; {n_failed} failed (see summary.csv)" if n_failed else ""
    console.print(f"aligned {n_ok} of {len(files)} photo(s) into {out}{failed_note}", highlight=False)
    if n_ok == 0:
        raise typer.Exit(code=1)
