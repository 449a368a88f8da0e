"""``cleftscore weights``: list, fetch, locate, convert and verify model weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, user_errors

weights_app = typer.Typer(help="Find, fetch, convert and verify model weights.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")

CacheDir = Annotated[
    Path | None,
    typer.Option("--cache-dir", help="Weights cache folder (default: $CLEFTSCORE_CACHE/weights or the user cache)."),
]


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)  # pragma: no cover


@weights_app.command("list")
def list_weights(cache_dir: CacheDir = None) -> None:
    """Show the known weights files, their licences and whether they are on this machine."""
    from rich.table import Table

    from cleftscore import weights

    table = Table("name", "kind", "size", "licence", "cached", "description")
    for entry in weights.REGISTRY.values():
        cached = weights.is_cached(entry, cache_dir=cache_dir)
        table.add_row(
            entry.name, entry.kind, _size(entry.size), entry.licence,
            "[green]yes[/green]" if cached else "no", entry.description,
        )  # fmt: skip
    console.print(table)


@weights_app.command()
def fetch(
    name: Annotated[str, typer.Argument(help="Registry name, e.g. ffhq or vgg16 (see `weights list`).")],
    cache_dir: CacheDir = None,
    url: Annotated[str | None, typer.Option(help="Download from this URL instead (a mirror).")] = None,
    timeout: Annotated[float, typer.Option(help="Network timeout in seconds.")] = 20.0,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Download again even if cached (replaces a damaged cached file once the new one checks out).",
        ),
    ] = False,
) -> None:
    """Download a weights file into the cache (resumes a partial download; checks it loads before caching)."""
    from cleftscore import weights

    with user_errors():
        entry = weights.get_entry(name)
        if url is not None:
            entry = dataclasses.replace(entry, url=url)
        path = weights.fetch(entry, cache_dir=cache_dir, progress=progress, timeout=timeout, force=force)
    console.print(str(path), highlight=False, soft_wrap=True)


@weights_app.command()
def path(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    cache_dir: CacheDir = None,
) -> None:
    """Print where a weights file is, or would be after `fetch`."""
    from cleftscore import weights

    with user_errors():
        entry = weights.get_entry(name)
        target = weights.weights_path(entry, cache_dir=cache_dir)
        if entry.kind != "bundled":
            target = target / entry.filename
    console.print(str(target), highlight=False, soft_wrap=True)


@weights_app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Generator weights: NVIDIA .pkl, rosinality .pt, .npz or .safetensors.")],
    dst: Annotated[Path, typer.Argument(help="Output .safetensors file (config stored in its header).")],
) -> None:
    """Convert generator weights to cleftscore's .safetensors format (no pickle code is run)."""
    from cleftscore.errors import CheckpointError
    from cleftscore.gan.checkpoints import read_checkpoint, save_generator
    from cleftscore.weights import replacement_hint_for_errors

    with user_errors():
        with replacement_hint_for_errors(src):
            config, state = read_checkpoint(src)
        try:
            save_generator(state, dst, config=config)
        except OSError as exc:
            raise CheckpointError(f"{dst}: cannot write the converted file ({exc.strerror or exc})") from None
    console.print(
        f"wrote {dst} ({config.img_resolution}x{config.img_resolution}, {len(state)} tensors)",
        highlight=False,
        soft_wrap=True,
    )


@weights_app.command()
def verify(
    file: Annotated[Path, typer.Argument(help="A weights file to check.")],
    cache_dir: CacheDir = None,
) -> None:
    """Check a weights file's format and shapes; print its kind, config and SHA-256."""
    from cleftscore import weights

    with user_errors():
        report = weights.verify_file(file, cache_dir=cache_dir)
    console.print(
        f"[green]ok[/green] {report.path}: {report.kind} ({report.format}), {_size(report.size)}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(f"sha256 {report.sha256}", highlight=False)
    if report.registry_match:
        console.print(f"matches registry entry {report.registry_match}", highlight=False)
    if report.config is not None:
        c = report.config
        console.print(
            f"resolution {c.img_resolution}, z_dim {c.z_dim}, w_dim {c.w_dim}, mapping layers {c.mapping_layers}, "
            f"channel_base {c.channel_base}, channel_max {c.channel_max}, num_fp16_res {c.num_fp16_res}, "
            f"conv_clamp {c.conv_clamp}",
            highlight=False,
            soft_wrap=True,
        )
