"""``cleftscore landmarks``: export a photo's landmarks, correct them from a file, see the history."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, user_errors

landmarks_app = typer.Typer(
    no_args_is_help=True,
    help="Landmarks corrected by hand: a photo of a run scored again on the corrected points.",
)
app.add_typer(landmarks_app, name="landmarks")


class FrameChoice(str, Enum):
    photo = "photo"
    aligned = "aligned"


@landmarks_app.command("export")
def export_command(
    run: Annotated[Path, typer.Argument(help="A run folder of `cleftscore score`.", show_default=False)],
    photo: Annotated[str, typer.Argument(help="Photo id (folder under photos/) or file name.", show_default=False)],
    out: Annotated[Path, typer.Option("--out", "-o", help="The landmark file to write (.json).")],
    frame: Annotated[FrameChoice, typer.Option(help="Coordinates in the photo's or the aligned face's pixels.")] = (
        FrameChoice.photo
    ),
) -> None:
    """Write a photo's current 68 points (and the points added by hand) as a landmark file to edit.

    Move a point by changing its numbers, add one by name (alar_crease_left, columella_base,
    nostril_top_right, cleft_edge_medial, ...), delete the points you leave alone, then run
    `cleftscore landmarks apply`.
    """
    from cleftscore.errors import CleftscoreError
    from cleftscore.face.align import transform_points
    from cleftscore.io import write_json
    from cleftscore.run.corrections import latest_edit
    from cleftscore.run.folder import list_photo_ids, read_record

    with user_errors():
        ids = list_photo_ids(run)
        pid = photo if photo in ids else next((i for i in ids if Path(read_record(run, i).file).name == photo), None)
        if pid is None:
            raise CleftscoreError(f"{photo}: no photo of that id or file name in {run}")
        rec = read_record(run, pid)
        if rec.geometry is None:
            raise CleftscoreError(f"{rec.file}: no face was aligned in this run, so it has no landmarks to export")
        geo = rec.geometry
        to_frame = geo.to_original if frame is FrameChoice.photo else None
        points = {str(i): [round(float(x), 2), round(float(y), 2)] for i, (x, y) in
                  enumerate(geo.landmarks_original if to_frame is not None else geo.landmarks_aligned)}  # fmt: skip
        edit = latest_edit(run, pid)
        if edit is not None and edit.added:
            xy = list(edit.added.values())
            if frame is FrameChoice.aligned:
                import numpy as np

                xy = transform_points(np.linalg.inv(geo.to_original), xy).tolist()
            points.update(
                {n: [round(float(x), 2), round(float(y), 2)] for n, (x, y) in zip(edit.added, xy, strict=True)}
            )
        write_json(out, {"photos": {pid: {"frame": frame.value, "points": points}}})
    console.print(f"{out}: {len(points)} points of {rec.file} ({frame.value} pixels)")


@landmarks_app.command("apply")
def apply_command(
    run: Annotated[Path, typer.Argument(help="A run folder of `cleftscore score`.", show_default=False)],
    file: Annotated[Path, typer.Argument(help="Landmark file: JSON, or CSV with photo,point,x,y.", show_default=False)],
) -> None:
    """Score the photos a landmark file names again on their corrected points.

    Alignment, mirror or GAN normalization, regions, score, heat map and nasolabial measures
    are all redone from the corrected points; every edit is kept with the positions it replaced
    (landmarks/<photo id>.json in the run folder).
    """
    from cleftscore.run.corrections import correct_landmarks, read_landmark_file

    with user_errors():
        entries = read_landmark_file(file)
        results = correct_landmarks(run, entries)
    failed = 0
    for res in results:
        if res.ok:
            n = res.measures.get("landmarks_corrected_points")
            console.print(f"{res.photo_id}: score {res.score:.4g}" + (f" ({n.value:.0f} points by hand)" if n else ""))
        else:
            failed += 1
            console.print(f"[red]{res.message}[/red]", highlight=False)
    if failed:
        raise typer.Exit(code=1)


@landmarks_app.command("history")
def history_command(
    run: Annotated[Path, typer.Argument(help="A run folder of `cleftscore score`.", show_default=False)],
    photo: Annotated[str, typer.Argument(help="Photo id (folder under photos/).", show_default=False)],
) -> None:
    """Print a photo's landmark edits, oldest first, as JSON."""
    from cleftscore.run.corrections import landmark_history

    with user_errors():
        history = landmark_history(run, photo)
    typer.echo(json.dumps(history, indent=1))
