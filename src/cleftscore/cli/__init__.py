"""The ``cleftscore`` command line: a thin Typer shell over the library.

Each verb lives in its own module of this package and is registered below; command functions
parse options, call the library and print. User mistakes (:class:`cleftscore.CleftscoreError`)
become one red line and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import typer

from cleftscore import __version__

app = typer.Typer(
    name="cleftscore",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_show_locals=False,  # locals may hold patient pixels
    help=(
        "Objective severity scores and heat maps for cleft lip photographs.\n\n"
        "A research tool, not a certified medical device."
    ),
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"cleftscore {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Objective severity scores and heat maps for cleft lip photographs."""


def _register() -> None:
    # Each module attaches its commands or sub-app to ``app``; one line per module.
    from cleftscore.cli import (
        align,  # noqa: F401
        bench,  # noqa: F401
        evaluate,  # noqa: F401
        landmarks,  # noqa: F401
        reference,  # noqa: F401
        score,  # noqa: F401
        serve,  # noqa: F401
        study,  # noqa: F401
        survey,  # noqa: F401
        weights,  # noqa: F401
    )


_register()


def main() -> None:
    """Console-script entry point."""
    app()
