"""Model weights: a small registry, a resumable checksummed downloader, a cache, and a verifier.

Nothing here runs at import time and nothing is downloaded unless :func:`fetch` is called.

Cache directory: ``$CLEFTSCORE_CACHE/weights`` when the environment variable ``CLEFTSCORE_CACHE``
is set, else ``platformdirs.user_cache_dir("cleftscore")/weights``.

Checksums: an entry with a published SHA-256 is verified after every download. NVIDIA publishes
no checksum for its pickles, so for those the SHA-256 of the first download is written next to the
file (``<file>.sha256``, trust on first use) and reported by :func:`verify_file`. Local files
given by path are checked by format and shapes, not by checksum.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import logging
import os
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cleftscore.errors import CheckpointError, DownloadError, WeightsMissingError
from cleftscore.paths import sha256_file, weights_cache_dir

if TYPE_CHECKING:  # pragma: no cover
    from cleftscore.gan.config import GeneratorConfig

__all__ = [
    "REGISTRY",
    "VerifyReport",
    "WeightsEntry",
    "fetch",
    "get_entry",
    "is_cached",
    "replacement_hint",
    "resolve_generator",
    "resolve_vgg16",
    "replacement_hint_for_errors",
    "verify_file",
    "weights_path",
]

log = logging.getLogger(__name__)

Kind = Literal["generator", "vgg16", "bundled"]

_CHUNK = 1 << 20

#: What :func:`cleftscore.gan.checkpoints.detect_format` may call each kind of download.
FORMATS_BY_KIND: dict[str, tuple[str, ...]] = {
    "generator": ("nvidia-pickle", "torch", "npz", "safetensors"),
    "vgg16": ("torch", "nvidia-pickle"),  # zip or legacy torch.save; legacy files start like a pickle
}


@dataclass(frozen=True)
class WeightsEntry:
    """One downloadable (or bundled) weights file.

    Parameters
    ----------
    name : str
        Registry name used on the command line (``ffhq``, ``vgg16``, ...).
    url : str
        Where to download it from; for ``kind="bundled"`` the path inside the installed
        package that ships it (``"lpips/weights/v0.1/vgg.pth"``).
    filename : str
        File name in the cache directory.
    sha256 : str or None
        Published SHA-256 (lower-case hex); None when no checksum is published.
    size : int or None
        Size in bytes when known.
    licence : str
        Licence that users of the file must respect.
    description : str
        One line for ``cleftscore weights list``.
    kind : {"generator", "vgg16", "bundled"}
        What the file is.
    """

    name: str
    url: str
    filename: str
    sha256: str | None
    size: int | None
    licence: str
    description: str
    kind: Kind

    def __post_init__(self) -> None:
        if self.kind not in ("generator", "vgg16", "bundled"):
            raise ValueError(f"kind must be 'generator', 'vgg16' or 'bundled', got {self.kind!r}")
        if self.sha256 is not None and (len(self.sha256) != 64 or self.sha256.strip("0123456789abcdef")):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")
        if not self.filename or "/" in self.filename and self.kind != "bundled":
            raise ValueError(f"filename must be a plain file name, got {self.filename!r}")


_NVIDIA_LICENCE = "NVIDIA Source Code License-NC (non-commercial)"

#: The known weights files, by name.
REGISTRY: dict[str, WeightsEntry] = {
    e.name: e
    for e in (
        WeightsEntry(
            name="ffhq",
            url="https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/ffhq.pkl",
            filename="stylegan2-ada-ffhq.pkl",
            sha256=None,
            size=None,
            licence=_NVIDIA_LICENCE,
            description="StyleGAN2-ADA FFHQ 1024 (stylegan2-ada-pytorch ffhq.pkl)",
            kind="generator",
        ),
        WeightsEntry(
            name="ffhq-config-f",
            url=(
                "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/"
                "transfer-learning-source-nets/ffhq-res1024-mirror-stylegan2-noaug.pkl"
            ),
            filename="ffhq-res1024-mirror-stylegan2-noaug.pkl",
            sha256=None,
            size=None,
            licence=_NVIDIA_LICENCE,
            description="original StyleGAN2 config-F FFHQ 1024, NVIDIA's PyTorch conversion",
            kind="generator",
        ),
        WeightsEntry(
            name="vgg16",
            url="https://download.pytorch.org/models/vgg16-397923af.pth",
            filename="vgg16-397923af.pth",
            sha256="397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
            size=553_433_881,
            licence="BSD-3-Clause (torchvision)",
            description="torchvision VGG16 ImageNet (LPIPS trunk)",
            kind="vgg16",
        ),
        WeightsEntry(
            name="lpips-vgg",
            url="lpips/weights/v0.1/vgg.pth",
            filename="vgg.pth",
            sha256="a78928a0af1e5f0fcb1f3b9e8f8c3a2a5a3de244d830ad5c1feddc79b8432868",
            size=7289,
            licence="BSD-2-Clause (lpips)",
            description="LPIPS v0.1 VGG16 heads, inside the lpips package",
            kind="bundled",
        ),
    )
}


def get_entry(name: str | WeightsEntry) -> WeightsEntry:
    """Look up a registry entry (an entry passes through unchanged).

    Raises
    ------
    WeightsMissingError
        For an unknown name, listing the known ones.
    """
    if isinstance(name, WeightsEntry):
        return name
    try:
        return REGISTRY[name]
    except KeyError:
        raise WeightsMissingError(f"unknown weights {name!r}; known: {', '.join(REGISTRY)}") from None


def replacement_hint(path: str | Path) -> str | None:
    """For a file named as a registry download, the command that fetches a fresh copy."""
    name = Path(path).name
    for entry in REGISTRY.values():
        if entry.kind != "bundled" and entry.filename == name:
            return f"replace it with `cleftscore weights fetch {entry.name} --force`"
    return None


@contextlib.contextmanager
def replacement_hint_for_errors(path: str | Path) -> Iterator[None]:
    """Add :func:`replacement_hint` to a :class:`CheckpointError` raised while reading ``path``.

    For the callers that read a file which may come from the weights cache (the GAN normalizer,
    ``cleftscore weights verify``): a damaged download then names the command that replaces it.
    """
    try:
        yield
    except CheckpointError as exc:
        hint = replacement_hint(path)
        if hint is None or hint in str(exc):
            raise
        raise CheckpointError(f"{exc}; {hint}") from None


def weights_path(name: str | WeightsEntry, *, cache_dir: str | Path | None = None) -> Path:
    """Where a registry file is (bundled) or would be after :func:`fetch` (downloadable)."""
    entry = get_entry(name)
    if entry.kind == "bundled":
        return _bundled_path(entry)
    return Path(cache_dir) if cache_dir is not None else weights_cache_dir()


def _bundled_path(entry: WeightsEntry) -> Path:
    import importlib.util

    package, _, rel = entry.url.partition("/")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsMissingError(f"{entry.name}: the {package!r} package is not installed (pip install {package})")
    return Path(next(iter(spec.submodule_search_locations))) / rel


def is_cached(name: str | WeightsEntry, *, cache_dir: str | Path | None = None) -> bool:
    """Whether the file is present (cache or bundled), with the right size when known."""
    entry = get_entry(name)
    try:
        path = _target(entry, cache_dir)
    except WeightsMissingError:
        return False
    return path.is_file() and (entry.size is None or path.stat().st_size == entry.size)


def _target(entry: WeightsEntry, cache_dir: str | Path | None) -> Path:
    if entry.kind == "bundled":
        return _bundled_path(entry)
    return weights_path(entry, cache_dir=cache_dir) / entry.filename


# ----------------------------------------------------------------------------------------------
# Download.


def fetch(
    name: str | WeightsEntry,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = True,
    timeout: float = 20,
    force: bool = False,
) -> Path:
    """Return the local path of a registry file, downloading it into the cache if needed.

    Parameters
    ----------
    name : str or WeightsEntry
        Registry name, or an entry (e.g. one with another URL, for a mirror).
    cache_dir : str or Path, optional
        Cache folder; see :func:`cleftscore.paths.weights_cache_dir`.
    progress : bool
        Show a progress bar on stderr.
    timeout : float
        Seconds to wait for the connection and for each read.
    force : bool
        Download again even when the file is cached (the cached copy stays until the new one
        has passed every check).

    Returns
    -------
    Path
        The verified file.

    Raises
    ------
    DownloadError
        Offline, HTTP error, interrupted transfer (the ``.part`` file is kept and the next call
        resumes it with an HTTP Range request), checksum mismatch, or a file that the loader the
        pipeline uses does not accept (then the download is deleted).
    WeightsMissingError
        A bundled file whose package is missing.

    Notes
    -----
    The file is written to ``<name>.part`` and renamed into place only after its size, its
    checksum and a full load by the pipeline's own loader (the generator reader, or the VGG16
    shape check) have passed, so a file in the cache is always complete and usable. A lock file
    beside it keeps two processes from writing the same download.
    """
    entry = get_entry(name)
    dest = _target(entry, cache_dir)
    if entry.kind == "bundled":
        if not dest.is_file():
            raise WeightsMissingError(f"{entry.name}: {dest} is missing; reinstall the package that ships it")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(dest.with_name(dest.name + ".lock")):
        if not force and dest.is_file() and (entry.size is None or dest.stat().st_size == entry.size):
            return dest
        part = dest.with_name(dest.name + ".part")
        if force:
            part.unlink(missing_ok=True)
        try:
            complete = _download(entry, part, progress=progress, timeout=timeout)
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            raise DownloadError(_failure(entry, dest, exc)) from None
        _accept_download(entry, part, dest, length_known=complete)
    return dest


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an advisory lock on ``path`` (created if needed); waits for another holder."""
    import fcntl

    with path.open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _accept_download(entry: WeightsEntry, part: Path, dest: Path, *, length_known: bool) -> None:
    """Check a finished ``.part`` (size, checksum, the pipeline's loader); rename it into the cache."""

    def refuse(reason: str) -> DownloadError:
        part.unlink(missing_ok=True)
        return DownloadError(f"{entry.url}: {reason}; the download was deleted and nothing was cached")

    size = part.stat().st_size
    if entry.size is not None and size != entry.size:
        raise refuse(f"got {size} bytes, expected {entry.size}")
    problem = _load_problem(entry, part)
    if problem is not None:
        how = "" if length_known else " (the server sent no Content-Length, so a cut transfer looks like this too)"
        raise refuse(f"the file is not a usable {entry.kind} weights file: {problem}{how}")
    digest = sha256_file(part)
    if entry.sha256 is not None and digest != entry.sha256:
        raise refuse(f"checksum mismatch (sha256 {digest}, expected {entry.sha256})")
    if entry.sha256 is None:
        rec = dest.with_name(dest.name + ".sha256")
        tmp = rec.with_name(rec.name + ".tmp")
        tmp.write_text(f"{digest}  {dest.name}\n")
        tmp.replace(rec)
        log.info("%s: no published checksum; recorded sha256 %s (trust on first use)", dest, digest)
    part.replace(dest)


def _load_problem(entry: WeightsEntry, path: Path) -> str | None:
    """Why the loader the pipeline uses refuses ``path`` (None: it loads)."""
    try:
        if entry.kind == "generator":
            from cleftscore.gan.checkpoints import read_checkpoint

            with replacement_hint_for_errors(path):
                read_checkpoint(path)
        elif entry.kind == "vgg16":
            from cleftscore.perceptual import load_vgg16_state_dict

            load_vgg16_state_dict(path)
    except CheckpointError as exc:
        return str(exc).removeprefix(f"{path}: ").removesuffix("; re-fetch it")
    return None


def _failure(entry: WeightsEntry, dest: Path, exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        reason = f"HTTP {exc.code} {exc.reason}"
    elif isinstance(exc, urllib.error.URLError):
        reason = str(exc.reason)
    else:
        reason = str(exc) or type(exc).__name__
    option = {"generator": "--generator PATH", "vgg16": "--vgg16 PATH"}.get(entry.kind, "its path")
    return (
        f"could not download {entry.name} from {entry.url} ({reason}); "
        f"download it yourself and pass {option}, or put it at {dest}"
    )


def _download(entry: WeightsEntry, part: Path, *, progress: bool, timeout: float) -> bool:
    """Download (or resume) into ``part``; True when the server said how long the file is.

    A 416 answer to a resume means the server cannot continue from what ``part`` holds: the
    partial file is dropped and the download starts again, once.
    """
    for _attempt in range(2):
        have = part.stat().st_size if part.is_file() else 0
        headers = {"User-Agent": "cleftscore"}
        if have:
            headers["Range"] = f"bytes={have}-"
        req = urllib.request.Request(entry.url, headers=headers)
        try:
            resp = urllib.request.urlopen(req, timeout=timeout)  # noqa: S310 - URL comes from the registry
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:
                part.unlink()
                continue
            raise
        with resp:
            return _receive(entry, resp, part, have, progress=progress)
    raise OSError("the server refused to resume and then to send the whole file (HTTP 416)")


def _receive(entry: WeightsEntry, resp: Any, part: Path, have: int, *, progress: bool) -> bool:
    resumed = resp.status == 206 and _content_range_start(resp.headers.get("Content-Range")) == have
    if resp.status == 206 and not resumed:
        raise OSError(f"the server resumed at another offset than the {have} bytes already here")
    mode, start = ("ab", have) if resumed else ("wb", 0)
    length = resp.headers.get("Content-Length")
    total = start + int(length) if length is not None else None
    got = start
    bar = _progress_bar(progress, entry, total if total is not None else entry.size, start)
    try:
        with part.open(mode) as f:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except http.client.IncompleteRead as exc:
                    f.write(exc.partial)
                    got += len(exc.partial)
                    break
                if not chunk:
                    break
                f.write(chunk)
                got += len(chunk)
                if bar is not None:
                    bar[0].update(bar[1], completed=got)
            f.flush()
            os.fsync(f.fileno())
    finally:
        if bar is not None:
            bar[0].stop()
    if total is not None and got < total:
        raise OSError(
            f"transfer interrupted at {got} of {total} bytes; partial file kept at {part}, run again to resume"
        )
    return total is not None


def _content_range_start(value: str | None) -> int | None:
    if not value or not value.startswith("bytes "):
        return None
    first = value[6:].split("-", 1)[0]
    return int(first) if first.isdigit() else None


def _progress_bar(enabled: bool, entry: WeightsEntry, total: int | None, start: int):  # noqa: ANN202
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(f"{entry.name}", total=total, completed=start)
    bar.start()
    return bar, task


# ----------------------------------------------------------------------------------------------
# Resolution of user choices to files.


def resolve_generator(
    spec: str | Path | None = None, *, cache_dir: str | Path | None = None, download: bool = False
) -> Path:
    """Turn ``--generator`` (a registry name or a path) into an existing file.

    Parameters
    ----------
    spec : str, Path or None
        A registry name (``"ffhq"``) or a local path. None: the environment variable
        ``CLEFTSCORE_GENERATOR``, else ``"ffhq"``.
    cache_dir : str or Path, optional
        Cache folder for registry names.
    download : bool
        Fetch a registry file that is not cached yet (otherwise that is an error).

    Raises
    ------
    WeightsMissingError
        The file does not exist; the message says how to get it.
    """
    return _resolve(spec, env="CLEFTSCORE_GENERATOR", default="ffhq", kind="generator", option="--generator",
                    cache_dir=cache_dir, download=download)  # fmt: skip


def resolve_vgg16(
    spec: str | Path | None = None, *, cache_dir: str | Path | None = None, download: bool = False
) -> Path:
    """Turn ``--vgg16`` (a path or ``"vgg16"``) into an existing file; env ``CLEFTSCORE_VGG16``.

    Raises
    ------
    WeightsMissingError
        Telling the user to run ``cleftscore weights fetch vgg16`` or pass ``--vgg16 PATH``.
    """
    return _resolve(spec, env="CLEFTSCORE_VGG16", default="vgg16", kind="vgg16", option="--vgg16",
                    cache_dir=cache_dir, download=download)  # fmt: skip


def _check_cached(entry: WeightsEntry, target: Path) -> None:
    """A cached download must still look like its kind and match its published or recorded sha256.

    The format is checked from the first bytes before the (slow) sha256 of a large file.
    """
    if entry.kind == "bundled":
        return
    hint = replacement_hint(target) or f"replace it with `cleftscore weights fetch {entry.name} --force`"
    from cleftscore.gan.checkpoints import detect_format

    try:
        fmt = detect_format(target)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; {hint}") from None
    allowed = FORMATS_BY_KIND[entry.kind]
    if fmt not in allowed:
        raise CheckpointError(f"{target}: a {fmt} file, not {entry.kind} weights; {hint}")
    expected = entry.sha256
    if expected is None:
        rec = target.with_name(target.name + ".sha256")
        if not rec.is_file():
            return
        expected = (rec.read_text().split() or [""])[0]
    digest = sha256_file(target)
    if digest != expected:
        raise CheckpointError(
            f"{target}: sha256 {digest} does not match the recorded {expected}; the file changed since it was "
            f"downloaded: {hint}"
        )


def _resolve(
    spec: str | Path | None, *, env: str, default: str, kind: str, option: str,
    cache_dir: str | Path | None, download: bool,
) -> Path:  # fmt: skip
    if spec is None or str(spec) == "":
        spec = os.environ.get(env) or default
    if isinstance(spec, str) and spec in REGISTRY:
        entry = REGISTRY[spec]
        if entry.kind != kind:
            raise WeightsMissingError(f"{spec!r} is {entry.kind} weights, not {kind} weights")
        if is_cached(entry, cache_dir=cache_dir):
            target = _target(entry, cache_dir)
            _check_cached(entry, target)
            return target
        if download:
            return fetch(entry, cache_dir=cache_dir)
        raise WeightsMissingError(
            f"{spec} weights are not on this machine; run `cleftscore weights fetch {spec}` "
            f"or pass {option} PATH (expected at {_target(entry, cache_dir)})"
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        names = ", ".join(n for n, e in REGISTRY.items() if e.kind == kind)
        raise WeightsMissingError(f"{path}: no such file (give {option} an existing file or one of: {names})")
    return path


# ----------------------------------------------------------------------------------------------
# Verification.


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify_file` found.

    Attributes
    ----------
    path : Path
    kind : {"generator", "vgg16", "lpips-heads"}
    format : str
        ``nvidia-pickle``, ``torch``, ``npz`` or ``safetensors``.
    sha256 : str
    size : int
        Bytes.
    config : GeneratorConfig or None
        For generators.
    registry_match : str or None
        The registry name whose published (or first-download) checksum this file has.
    """

    path: Path
    kind: str
    format: str
    sha256: str
    size: int
    config: GeneratorConfig | None = None
    registry_match: str | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly dict."""
        d = dataclasses.asdict(self)
        d["path"] = str(self.path)
        d["config"] = None if self.config is None else self.config.to_dict()
        return d


_LPIPS_CHANNELS = (64, 128, 256, 512, 512)


def verify_file(path: str | Path, *, cache_dir: str | Path | None = None) -> VerifyReport:
    """Check that a file is a usable generator, VGG16 or LPIPS-heads weights file.

    Parameters
    ----------
    path : str or Path
        The file.
    cache_dir : str or Path, optional
        Where first-download checksums (``*.sha256``) are looked up for ``registry_match``.

    Returns
    -------
    VerifyReport

    Raises
    ------
    CheckpointError
        When the file is none of these (one line naming the file and the reasons).
    """
    from cleftscore.gan.checkpoints import detect_format, read_checkpoint

    path = Path(path)
    fmt = detect_format(path)  # from the first bytes, before anything is hashed or loaded

    def report(kind: str, fmt: str, config: GeneratorConfig | None) -> VerifyReport:
        digest = sha256_file(path)
        return VerifyReport(path, kind, fmt, digest, path.stat().st_size, config, _registry_match(digest, cache_dir))

    try:
        with replacement_hint_for_errors(path):
            config, _state = read_checkpoint(path)
        return report("generator", fmt, config)
    except CheckpointError as exc:
        gen_reason = str(exc).removeprefix(f"{path}: ")
        # npz, safetensors and NVIDIA network pickles can only be generators; a refusal on safety
        # or size grounds is final too (torch.load is not tried on such a file)
        if (
            fmt in ("npz", "safetensors")
            or "refused" in gen_reason
            or "limit" in gen_reason
            or _is_network_pickle(path)
        ):
            raise
    kind, other_reason = _check_torch_weights(path, fmt)
    if kind is not None:
        return report(kind, "torch" if fmt == "nvidia-pickle" else fmt, None)
    raise CheckpointError(f"{path}: not a usable weights file: {gen_reason}; {other_reason}")


def _is_network_pickle(path: Path) -> bool:
    """Whether a pickle names NVIDIA's persistence module near its start (G_ema comes first or early)."""
    with path.open("rb") as f:
        return b"torch_utils.persistence" in f.read(1 << 16)


def _check_torch_weights(path: Path, fmt: str) -> tuple[str | None, str]:
    if fmt not in ("torch", "nvidia-pickle"):
        return None, "not VGG16/LPIPS weights"
    from cleftscore.gan.checkpoints import check_torch_zip

    try:
        check_torch_zip(path)
    except CheckpointError as exc:
        return None, str(exc).removeprefix(f"{path}: ")
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it did not write
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - weights_only refusals come as many types (a rebuild given a string: TypeError)
        return None, "not a PyTorch state dict of tensors either"
    if not isinstance(sd, dict):
        return None, "not a PyTorch state dict"
    from cleftscore.perceptual import vgg16_feature_shapes

    shapes = {k: tuple(v.shape) for k, v in sd.items() if isinstance(v, torch.Tensor)}
    want = vgg16_feature_shapes()
    if all(shapes.get(k) == s for k, s in want.items()):
        return "vgg16", ""
    heads = {f"lin{i}.model.1.weight": (1, c, 1, 1) for i, c in enumerate(_LPIPS_CHANNELS)}
    if shapes == heads:
        return "lpips-heads", ""
    bad = [k for k, s in want.items() if shapes.get(k) != s]
    return None, f"not VGG16 weights either ({len(bad)} of {len(want)} feature tensors missing or misshaped)"


def _registry_match(digest: str, cache_dir: str | Path | None) -> str | None:
    for entry in REGISTRY.values():
        if entry.sha256 == digest:
            return entry.name
    for entry in REGISTRY.values():
        if entry.kind == "bundled":
            continue
        rec = weights_path(entry, cache_dir=cache_dir) / (entry.filename + ".sha256")
        try:
            if rec.is_file() and rec.read_text().split()[:1] == [digest]:
                return entry.name
        except OSError:
            continue
    return None
