"""Helpers shared by the CLI modules: consoles and turning library errors into one red line."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import typer
from rich.console import Console

from cleftscore.errors import CleftscoreError

__all__ = ["console", "err_console", "user_errors"]

console = Console()
err_console = Console(stderr=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`CleftscoreError` into one red line on stderr and exit code 1."""
    try:
        yield
    except CleftscoreError as exc:
        from rich.markup import escape

        # escaped: file names such as photo[1].jpg are not rich markup
        err_console.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
