"""Helpers shared by the CLI modules: consoles and turning library errors into one red line."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import typer
from rich.console import Console

from cleftscore.errors import CleftscoreError

__all__ = ["console", "err_console", "literal", "user_errors"]

console = Console()
err_console = Console(stderr=True)


#: Characters a terminal acts on instead of showing: C0 and C1 controls, DEL, bidirectional overrides.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def literal(text: object) -> str:
    """``text`` to print exactly as it is: Rich markup escaped, control characters as escapes (``\\x1b``).

    File names come from anyone; ``[red]a.png`` or an ESC sequence in one must print as those
    characters, not restyle or rewrite the terminal.
    """
    from rich.markup import escape

    shown = _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(text))
    return escape(shown)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn a :class:`CleftscoreError` into one red line on stderr and exit code 1."""
    try:
        yield
    except CleftscoreError as exc:
        # literal: file names such as photo[1].jpg are not rich markup, nor terminal commands
        err_console.print(f"[red]error:[/red] {literal(exc)}", highlight=False, soft_wrap=True)
        raise typer.Exit(code=1) from None
