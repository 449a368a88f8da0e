"""Tests of the step runner and the compile wrapper (CPU; the CUDA-graph path is in test_gpu.py)."""

from __future__ import annotations

import logging

import pytest
import torch

from cleftscore.gan import steps as steps_mod
from cleftscore.gan.steps import compiled, run_steps


def test_run_steps_calls_step_and_reports_progress() -> None:
    counter = torch.zeros(())
    seen = []

    def step() -> None:
        counter.add_(1)

    done, mode = run_steps(
        step, 7, device=torch.device("cpu"), cuda_graph=True, progress=lambda d, t: seen.append((d, t))
    )
    # On a CPU a CUDA graph is not possible: ordinary calls, every one of them.
    assert (done, mode) == (7, "eager")
    assert int(counter) == 7
    assert seen == [(i, 7) for i in range(1, 8)]


def test_run_steps_stops_when_asked() -> None:
    calls = []
    done, _ = run_steps(
        lambda: calls.append(1), 100, device=torch.device("cpu"), cuda_graph=False, stop=lambda d: d == 30
    )
    assert done == 30 and len(calls) == 30


def test_compiled_disabled_is_the_function_itself() -> None:
    def f(x):
        return x + 1

    assert compiled(f, enabled=False) is f


def test_compiled_falls_back_with_a_warning(monkeypatch, caplog) -> None:
    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler here\nlong compiler log")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    calls = []

    def f(x):
        calls.append(1)
        return x * 2

    g = compiled(f, enabled=True, what="test function")
    with caplog.at_level(logging.WARNING, logger=steps_mod.__name__):
        assert float(g(torch.tensor(3.0))) == 6.0
        assert float(g(torch.tensor(4.0))) == 8.0
    assert len(calls) == 2  # the plain function from the first call on
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1 and "test function" in warnings[0] and "no C++ compiler here" in warnings[0]
    assert "long compiler log" not in warnings[0]  # one line


def test_compiled_does_not_hide_out_of_memory(monkeypatch) -> None:
    def oom_compile(fn, **kwargs):
        def run(*args, **kw):
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")

        return run

    monkeypatch.setattr(torch, "compile", oom_compile)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        compiled(lambda x: x, enabled=True)(torch.zeros(1))


def test_compiled_runs_the_compiled_function(monkeypatch) -> None:
    # A cheap backend (graph capture and autograd tracing, no code generation) stands in for
    # inductor, which needs minutes for a generator on two CPU cores.
    real = torch.compile
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: real(fn, backend="aot_eager", **kw))
    x = torch.randn(5, requires_grad=True)
    g = compiled(lambda t: (t.sin() * 3).sum(), enabled=True)
    out = g(x)
    (grad,) = torch.autograd.grad(out, x)
    torch.testing.assert_close(grad, 3 * x.detach().cos())


def test_compiled_falls_back_when_the_backward_fails_to_compile(monkeypatch, caplog) -> None:
    # AOTAutograd compiles the backward at the first gradient; a failure there must also fall
    # back to the plain function, before the caller's own backward runs into it.
    class BadBackward(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, grad):
            raise RuntimeError("backward kernel failed to compile")

    monkeypatch.setattr(torch, "compile", lambda fn, **kw: lambda *a: BadBackward.apply(a[0]).sum())
    g = compiled(lambda x: (x * 2).sum(), enabled=True, what="probe test")
    x = torch.arange(3.0, requires_grad=True)
    with caplog.at_level(logging.WARNING, logger=steps_mod.__name__):
        out = g(x)
    (grad,) = torch.autograd.grad(out, x)  # the caller's backward works: the plain function's
    torch.testing.assert_close(grad, torch.full((3,), 2.0))
    assert any("backward kernel failed" in r.getMessage() for r in caplog.records)
