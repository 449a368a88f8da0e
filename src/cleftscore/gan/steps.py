"""Running an optimisation step many times: eagerly, or captured once as a CUDA graph and replayed.

A projection step of the 1024-px generator launches a few thousand small kernels. For one photo
on a GPU, launching them took longer than running them (an H200 took 88 ms per step, a replayed
graph of the same step 19 ms), so :func:`run_steps` can capture the step as a CUDA graph after a few
ordinary warm-up steps and then replay it: one launch per step. This is only correct for a step
that keeps all of its changing state on the device (step counter, learning rate, random draws
made up front) and never reads a value back to the host; :func:`cleftscore.gan.invert.invert`
is written that way.

:func:`compiled` wraps a function in ``torch.compile`` and falls back to the plain function,
with a warning, when compilation fails on this machine.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable

import torch

__all__ = ["run_steps", "graph_planned", "compiled", "WARMUP_STEPS"]

logger = logging.getLogger(__name__)

#: Ordinary steps before a capture: the optimiser's state, cuDNN's algorithm choice and the
#: caching allocator must have settled, or the graph would record first-call work.
WARMUP_STEPS = 3
#: On CUDA the host runs at most twice this many steps ahead of the GPU, so that progress
#: reports (and the ETA drawn from them) stay close to the work actually done, while the GPU
#: always has queued work.
_LAG_STEPS = 4


def graph_planned(device: torch.device, cuda_graph: bool, total: int) -> bool:
    """Whether :func:`run_steps` will try a CUDA graph (so the optimiser must be capturable)."""
    return cuda_graph and device.type == "cuda" and total > WARMUP_STEPS + 1


def run_steps(
    step: Callable[[], None],
    total: int,
    *,
    device: torch.device,
    cuda_graph: bool,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[int], bool] | None = None,
) -> tuple[int, str]:
    """Call ``step`` ``total`` times, as ordinary calls or as replays of a captured CUDA graph.

    Parameters
    ----------
    step : callable
        One optimisation step. For ``cuda_graph=True`` everything that changes from one step to
        the next must live in device tensors that the step itself updates, and the step must not
        synchronise with the host (a replay re-runs the recorded kernels, not the Python).
    total : int
        Steps to run.
    device : torch.device
        Where the step runs.
    cuda_graph : bool
        Capture after :data:`WARMUP_STEPS` ordinary steps and replay (CUDA only; ignored on
        other devices and for runs too short to gain from it, see :func:`graph_planned`). If the
        capture fails, the remaining steps run as ordinary calls and a warning is logged.
    progress : callable or None
        ``progress(done, total)`` after each step is queued (the GPU is at most a few steps
        behind: the host waits for it every few steps).
    stop : callable or None
        ``stop(done)`` after each step; True ends the run early (it may synchronise).

    Returns
    -------
    steps_run : int
        Steps run (fewer than ``total`` after an early stop).
    mode : {"eager", "cuda_graph"}
        How the steps after the warm-up ran.
    """
    if device.type != "cuda":
        return _run(step, total, None, device=device, progress=progress, stop=stop)
    with torch.cuda.device(device):  # events, streams and the capture on this GPU, not cuda:0
        return _run(step, total, cuda_graph, device=device, progress=progress, stop=stop)


def _run(step, total, cuda_graph, *, device, progress, stop) -> tuple[int, str]:
    on_cuda = device.type == "cuda"
    pending: collections.deque = collections.deque()
    done = 0

    def after_step() -> bool:
        nonlocal done
        done += 1
        if on_cuda and done % _LAG_STEPS == 0:
            event = torch.cuda.Event(blocking=True)  # the host sleeps, not spins, while waiting
            event.record()
            pending.append(event)
            if len(pending) > 1:
                pending.popleft().synchronize()
        if progress is not None:
            progress(done, total)
        return stop is not None and stop(done)

    graph = None
    if graph_planned(device, bool(cuda_graph), total):
        # Warm-up on a side stream, as the capture needs (PyTorch's CUDA graph notes).
        side = torch.cuda.Stream(device=device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                step()
                if after_step():
                    torch.cuda.current_stream(device).wait_stream(side)
                    return done, "eager"
        torch.cuda.current_stream(device).wait_stream(side)
        graph = _capture(step, device, side)
    mode = "cuda_graph" if graph is not None else "eager"
    while done < total:
        if graph is not None:
            graph.replay()
        else:
            step()
        if after_step():
            break
    return done, mode


def _capture(step: Callable[[], None], device: torch.device, stream: torch.cuda.Stream) -> torch.cuda.CUDAGraph | None:
    """Record one call of ``step`` as a CUDA graph; None when capture fails.

    The Python of ``step`` runs, but its kernels are only recorded: the first real execution
    is the first replay.
    """
    graph = torch.cuda.CUDAGraph()
    try:
        # An explicit capture stream on this device (the default one is made once, on
        # whichever device was current at the first capture of the process).
        with torch.cuda.graph(graph, stream=stream):
            step()
    except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly instead
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            raise
        logger.warning("CUDA graph capture failed (%s: %s); running ordinary steps", type(exc).__name__, exc)
        torch.cuda.synchronize(device)
        return None
    return graph


def compiled(fn: Callable, *, enabled: bool, what: str = "step") -> Callable:
    """``torch.compile(fn)`` that falls back to ``fn`` (once, with a warning) if compiling fails.

    Compilation happens on the first call: the forward there, the backward at the first
    gradient. So the first call runs the compiled function twice: once to take a gradient of
    its output's sum with respect to the arguments that require one (a probe that compiles the
    backward), then for the output it returns. A failure in either (no C++ compiler, no
    Triton, an unsupported operation) is caught, logged and the plain function used from then
    on. Out of memory errors are not compile failures and are raised.

    Parameters
    ----------
    fn : callable
        Pure function of tensors (positional arguments: tensors or lists of tensors) returning
        a tensor; it may be called twice on the first call.
    enabled : bool
        False returns ``fn`` itself.
    what : str
        Name used in the warning.
    """
    if not enabled:
        return fn
    try:
        fast = torch.compile(fn, dynamic=False)
    except Exception as exc:  # noqa: BLE001 - e.g. torch.compile unsupported on this Python
        logger.warning("torch.compile is not available for the %s (%s); running it uncompiled", what, exc)
        return fn
    state = {"fn": fast, "checked": False}

    def call(*args, **kwargs):
        if state["checked"]:
            return state["fn"](*args, **kwargs)
        try:
            out = fast(*args, **kwargs)
            inputs = [t for t in _tensors(args) if t.requires_grad]
            if out.requires_grad and inputs:
                # Compiles the backward now, where a failure can still be caught. Its own
                # forward: a compiled backward may reuse its saved buffers, so it runs once.
                torch.autograd.grad(out.sum(), inputs, allow_unused=True)
                out = fast(*args, **kwargs)
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any compiler failure: use the plain function
            logger.warning("torch.compile failed for the %s (%s: %s); running it uncompiled",
                           what, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")  # fmt: skip
            state["fn"] = fn
            out = fn(*args, **kwargs)
        state["checked"] = True
        return out

    return call


def _tensors(args) -> list[torch.Tensor]:
    """Tensors among positional arguments, looking one level into lists and tuples."""
    found = []
    for a in args:
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found.extend(t for t in a if isinstance(t, torch.Tensor))
    return found
