"""``cleftscore serve``: the local web app on a study database (docs/web.md)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from cleftscore.cli import app
from cleftscore.cli._common import console, err_console, user_errors
from cleftscore.cli.options import (
    AdaptStepsOpt,
    Detector,
    DetectorOpt,
    DeviceOpt,
    GeneratorOpt,
    Loss,
    LossOpt,
    ReferenceOpt,
    StepsOpt,
    Vgg16Opt,
)
from cleftscore.errors import CleftscoreError


@app.command("serve")
def serve(
    db: Annotated[
        Path | None, typer.Option("--db", help="Study database file (default: study.sqlite in the user data folder).")
    ] = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; anything but 127.0.0.1/localhost needs the access token."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port to listen on.")] = 8765,
    allow_host: Annotated[
        list[str] | None, typer.Option("--allow-host", help="Another name clients use for this machine (Host header).")
    ] = None,
    new_token: Annotated[
        bool, typer.Option("--new-token", help="Replace the access token (the old one stops working).")
    ] = False,
    size: Annotated[
        int | None, typer.Option("--size", help="Aligned face size of every job (default: the method's).")
    ] = None,
    max_file_mb: Annotated[float, typer.Option("--max-file-mb", min=0.1, help="Largest photo accepted, in MB.")] = 25.0,
    max_files: Annotated[int, typer.Option("--max-files", min=1, help="Most photos in one upload.")] = 20,
    max_megapixels: Annotated[
        float, typer.Option("--max-megapixels", min=0.1, help="Largest photo accepted, in megapixels.")
    ] = 40.0,
    session_hours: Annotated[
        float, typer.Option("--session-hours", min=0.01, help="How long a browser's login lasts (with a token).")
    ] = 12.0,
    reference: ReferenceOpt = None,
    generator: GeneratorOpt = None,
    vgg16: Vgg16Opt = None,
    steps: StepsOpt = 2000,
    adapt_steps: AdaptStepsOpt = 50,
    loss: LossOpt = Loss.lpips,
    device: DeviceOpt = "auto",
    detector: DetectorOpt = Detector.hog,
) -> None:
    """Serve the study as web pages for clinicians: patients, visits, uploads, heat maps, comparisons.

    It listens on 127.0.0.1 (this machine only) unless --host says otherwise; then every browser
    must log in with an access token, made on first start and printed once.
    """
    from cleftscore.study.db import default_db_path, open_study
    from cleftscore.web.jobs import ServerLock, ServerState
    from cleftscore.web.settings import WebSettings, is_loopback
    from cleftscore.web.tokens import ensure_token

    with user_errors():
        path = db or default_db_path()
        # First of all: a second server on the same study stops here, before it opens or writes anything.
        with ServerLock(path):
            try:
                import uvicorn

                from cleftscore.web.app import create_app
            except ImportError as exc:
                raise CleftscoreError(f"the web app needs {exc.name}: pip install -c constraints.txt -e .") from None
            token_hash = None
            if not is_loopback(host):
                with open_study(path, create=True) as study:
                    setup = ensure_token(ServerState(study.files / "web" / "server.sqlite"), renew=new_token)
                token_hash = setup.token_hash
                err_console.print(f"[yellow]warning:[/yellow] listening on {host}: other machines on the network can reach this server. "
                                  "Every browser must log in with the access token; traffic is not encrypted (plain HTTP).",
                                  highlight=False, soft_wrap=True)  # fmt: skip
                if setup.new:
                    console.print(
                        f"Access token (shown this once, stored only as a hash): {setup.new}",
                        highlight=False,
                        soft_wrap=True,
                    )
                else:
                    console.print("Access token: the one printed when it was made (`--new-token` makes another).")
            extra = tuple(allow_host or ())
            if host in ("0.0.0.0", "::"):
                extra += (socket.gethostname(),)
            from cleftscore.normalize.gan import GanSettings

            try:
                if reference is not None:
                    from cleftscore.score.reference import load_reference

                    load_reference(str(reference))  # a file that is not a reference stops here, in one line
                gan = GanSettings(
                    generator=generator,
                    vgg16=vgg16,
                    steps=steps,
                    adapt_steps=adapt_steps,
                    loss=loss.value,
                    device=device,
                )
                settings = WebSettings(gan=gan, detector=detector.value, db=path, host=host, port=port, token_hash=token_hash, size=size, max_file_bytes=int(max_file_mb * 1e6),
                                       max_files=max_files, max_pixels=int(max_megapixels * 1e6), extra_hosts=extra,
                                       session_hours=session_hours, reference=reference)  # fmt: skip
            except (ValueError, OSError) as exc:
                raise CleftscoreError(f"invalid option: {exc}") from None
            web = create_app(settings)
            shown = f"[{host}]" if ":" in host else host
            console.print(
                f"cleftscore serving {path} at http://{shown}:{port}/ (Ctrl-C stops it)",
                highlight=False,
                soft_wrap=True,
            )
            server = uvicorn.Server(uvicorn.Config(web, host=host, port=port, log_level="warning", server_header=False,
                                                   proxy_headers=False, timeout_graceful_shutdown=5))  # fmt: skip
            handle_exit = server.handle_exit

            def stop(sig: int, frame: object) -> None:
                # Pages following a job hold an event stream open; end them so shutdown need not wait.
                web.state.ctx.begin_shutdown()
                handle_exit(sig, frame)  # type: ignore[arg-type]

            server.handle_exit = stop  # type: ignore[method-assign]
            server.run()
