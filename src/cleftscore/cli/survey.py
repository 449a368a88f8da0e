"""``cleftscore survey``: blinded ratings of the study's photos by a panel, and their reliability (docs/survey.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, user_errors
from cleftscore.errors import CleftscoreError

survey_app = typer.Typer(
    help="Rating surveys: a panel rates the study's photos blind; reliability and the machine's agreement.",
    no_args_is_help=True,
)
app.add_typer(survey_app, name="survey")

DbOpt = Annotated[
    Path | None, typer.Option("--db", help="Study database file (default: study.sqlite in the user data folder).")
]
SurveyArg = Annotated[str, typer.Argument(help="Survey id or title (`survey status` lists them).", show_default=False)]
UrlOpt = Annotated[
    str,
    typer.Option("--url", help="The server's address as raters reach it (`cleftscore serve --host ...`)."),
]


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Library errors and bad option values (``ValueError``) as one red line."""
    with user_errors():
        try:
            yield
        except ValueError as exc:
            raise CleftscoreError(str(exc)) from None


def _open(db: Path | None):
    from cleftscore.study.db import open_study

    return open_study(db, create=False)


def _print_links(invitations) -> None:
    console.print("Send each rater their own link; it is shown only now (only a hash of it is kept):")
    for inv in invitations:
        console.print(f"  {inv.code}: {inv.link}", highlight=False, soft_wrap=True)


@survey_app.command("create")
def create(
    title: Annotated[str, typer.Argument(help="A title raters see, unique in the study.", show_default=False)],
    phase: Annotated[list[str] | None, typer.Option("--phase", help="Only photos of visits in this phase (repeatable).")] = None,
    patient: Annotated[list[str] | None, typer.Option("--patient", help="Photos of this patient code (repeatable).")] = None,
    visit: Annotated[list[int] | None, typer.Option("--visit", help="Photos of this visit id (repeatable).")] = None,
    folder: Annotated[Path | None, typer.Option("--folder", help="Photos of this folder (already in the study).")] = None,
    scale: Annotated[str, typer.Option("--scale", help="MIN-MAX with optional anchors, e.g. 1-5:1=severe,5=none (default: the paper's 1-7, 1 most abnormal, 7 almost normal).")] = "1-7",
    higher_is: Annotated[str, typer.Option("--higher-is", help="What a higher rating means: normal or abnormal.")] = "normal",
    repeat: Annotated[float, typer.Option("--repeat", min=0.0, max=1.0, help="Fraction of the photos each rater sees again at the end (intra-rater agreement).")] = 0.2,
    crop: Annotated[str, typer.Option("--crop", help="face: a square around the detected face; whole: the whole photo.")] = "face",
    seed: Annotated[int | None, typer.Option("--seed", help="Seed of the raters' orders (default: drawn and recorded).")] = None,
    instructions: Annotated[str, typer.Option("--instructions", help="Shown to raters above the first photo.")] = "",
    rater: Annotated[list[str] | None, typer.Option("--rater", help="Invite this rater code now (repeatable).")] = None,
    url: UrlOpt = "http://127.0.0.1:8765",
    db: DbOpt = None,
) -> None:  # fmt: skip
    """Make a survey of the study's photos (all of them unless --phase/--patient/--visit/--folder choose)."""
    from cleftscore.study.survey import PhotoSelection, create_survey, invite_raters, parse_scale

    with _errors(), _open(db) as study:
        selection = PhotoSelection(visits=tuple(visit or ()), patients=tuple(patient or ()), phases=tuple(phase or ()),
                                   folder=folder)  # fmt: skip
        info = create_survey(study, title, selection, scale=parse_scale(scale, higher_is=higher_is),
                             repeat_fraction=repeat, crop=crop, seed=seed, instructions=instructions)  # fmt: skip
        console.print(f"Survey {info.id} {info.title!r}: {info.n_photos} photos, scale "
                      f"{info.scale.minimum}-{info.scale.maximum}, {info.repeat_fraction:.0%} repeated, seed {info.seed}")  # fmt: skip
        if rater:
            _print_links(invite_raters(study, info.id, rater, base_url=url))


@survey_app.command("invite")
def invite(
    survey: SurveyArg,
    codes: Annotated[list[str], typer.Argument(help="Pseudonymous rater codes, e.g. R01 R02.", show_default=False)],
    url: UrlOpt = "http://127.0.0.1:8765",
    db: DbOpt = None,
) -> None:
    """Invite raters: one link each, scoped to this survey only."""
    from cleftscore.study.survey import invite_raters

    with _errors(), _open(db) as study:
        _print_links(invite_raters(study, survey, codes, base_url=url))


@survey_app.command("status")
def status(survey: Annotated[str | None, typer.Argument(help="Survey id or title (default: all).")] = None,
           db: DbOpt = None) -> None:  # fmt: skip
    """Progress of the surveys: photos, raters, ratings given and submitted."""
    from cleftscore.study.survey import survey_status

    with _errors(), _open(db) as study:
        rows = survey_status(study, survey)
        if not rows:
            console.print("No surveys yet: `cleftscore survey create TITLE` makes one.")
        for s in rows:
            done = sum(r.submitted_at is not None for r in s.raters)
            console.print(f"Survey {s.id} {s.title!r}{' (closed)' if s.closed else ''}: {s.n_photos} photos, scale "
                          f"{s.scale.minimum}-{s.scale.maximum}, {len(s.raters)} raters, {done} submitted, seed {s.seed}")  # fmt: skip
            for r in s.raters:
                when = f"submitted {r.submitted_at:%Y-%m-%d %H:%M} UTC" if r.submitted_at else "not submitted"
                console.print(f"  {r.code}: {r.rated} of {r.total} rated, {when}", highlight=False)


@survey_app.command("export")
def export(
    survey: SurveyArg,
    out: Annotated[Path, typer.Option("--out", help="Folder for ratings.csv and ratings_long.csv.")] = Path("."),
    db: DbOpt = None,
) -> None:
    """Write ratings.csv (file,rating: panel means, for `cleftscore evaluate --ratings`) and ratings_long.csv."""
    from cleftscore.study.survey_report import export_ratings

    with _errors(), _open(db) as study:
        wide, long = export_ratings(study, survey, out)
        console.print(f"Wrote {wide} and {long}")


@survey_app.command("report")
def report(
    survey: SurveyArg,
    out: Annotated[Path | None, typer.Option("--out", help="Also write report.md and report.json here.")] = None,
    n_boot: Annotated[int, typer.Option("--n-boot", min=0, help="Bootstrap resamples of the machine correlations.")] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Bootstrap seed.")] = 0,
    min_r: Annotated[float, typer.Option("--min-r", help="A rater whose r with the others' mean is below this is far from the panel.")] = 0.5,
    db: DbOpt = None,
) -> None:  # fmt: skip
    """Per-photo means, ICC(2,1) and ICC(2,k), Krippendorff's alpha, repeat kappa, far raters, machine vs panel."""
    from cleftscore.study.survey_report import report_json, report_markdown, survey_report

    with _errors(), _open(db) as study:
        result = survey_report(study, survey, n_boot=n_boot, seed=seed, min_r=min_r)
        text = report_markdown(result)
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        if out is not None:
            from cleftscore.io import atomic_write_bytes, write_json

            atomic_write_bytes(out / "report.md", text.encode())
            write_json(out / "report.json", report_json(result))
            console.print(f"Wrote {out / 'report.md'} and {out / 'report.json'}")


@survey_app.command("close")
def close(survey: SurveyArg, db: DbOpt = None) -> None:
    """Close a survey: raters can no longer rate or submit."""
    from cleftscore.study.survey import close_survey

    with _errors(), _open(db) as study:
        close_survey(study, survey)
        console.print(f"Survey {survey!r} closed")
