"""The tree follows the data flow: a module imports only from its own stage and stages before it.

Every import is read with ``ast``, including imports inside functions and under
``TYPE_CHECKING``, so a cycle cannot hide in a function body. docs/architecture.md describes the
stages; this test is the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "cleftscore"

#: Stage of each top-level module or package, in the order a photo travels. A module may import
#: from its own stage and from stages with a smaller number, never from a later one. Stages that
#: share a number (web and distributed) may not import each other.
STAGES: dict[str, int] = {
    "errors": 0,
    "io": 1,
    "paths": 1,
    "face": 2,
    "gan": 3,
    "perceptual": 4,
    "weights": 5,
    "normalize": 6,
    "heatmap": 7,
    "score": 8,
    "report": 9,
    "run": 10,
    "evaluate": 11,
    "study": 12,
    "web": 13,
    "distributed": 13,
    "benchmarks": 14,
    "cli": 15,
}

#: Within ``gan``, the readable reference path never reaches into the speed machinery.
REFERENCE_PATH = ("cleftscore.gan.networks", "cleftscore.gan.config")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> list[tuple[int, str]]:
    """Every cleftscore module that ``path`` imports, with the line, absolute or relative."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from cleftscore.x import y`` may name a submodule y
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "cleftscore" or name.startswith("cleftscore.")]


def _stage(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in STAGES else None


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_module_belongs_to_a_stage() -> None:
    top = {p.name.removesuffix(".py") for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    assert top - {"__init__"} <= set(STAGES), f"modules without a stage: {sorted(top - {'__init__'} - set(STAGES))}"


@pytest.mark.parametrize("path", _sources(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_to_earlier_stages(path: Path) -> None:
    module = _module_name(path)
    own = _stage(module)
    wrong = []
    for line, name in _imports(path):
        target = _stage(name)
        if own is None or target is None or target == own:
            continue
        if STAGES[target] >= STAGES[own]:
            wrong.append(f"line {line}: {name} (stage {target}, {STAGES[target]}) from stage {own} ({STAGES[own]})")
    assert not wrong, f"{module} imports a later stage:\n" + "\n".join(wrong)


def test_the_reference_generator_does_not_import_the_speed_machinery() -> None:
    for module in REFERENCE_PATH:
        path = PACKAGE.parent / (module.replace(".", "/") + ".py")
        accel = [f"line {line}: {name}" for line, name in _imports(path) if name.startswith("cleftscore.gan.accel")]
        assert not accel, f"{module} imports gan.accel: {accel}"


def test_the_rule_catches_an_upward_import(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The checker itself: a function-level import of a later stage is found."""
    fake = tmp_path / "cleftscore" / "face"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from cleftscore.run.pipeline import score_photos\n")
    monkeypatch.setattr(f"{__name__}.PACKAGE", tmp_path / "cleftscore")
    with pytest.raises(AssertionError, match="line 2: cleftscore.run.pipeline"):
        test_imports_point_to_earlier_stages(fake / "x.py")


#: Longest function body, in lines without its docstring, that needs no word on why.
MAX_FUNCTION_LINES = 100


def test_no_function_is_graded_e_or_f_by_radon() -> None:
    from radon.complexity import cc_rank, cc_visit

    worst = []
    for path in _sources():
        for block in cc_visit(path.read_text(encoding="utf-8")):
            for b in [block, *getattr(block, "methods", [])]:
                if cc_rank(b.complexity) in ("E", "F"):
                    worst.append(
                        f"{path.relative_to(PACKAGE)}:{b.lineno} {b.name} ({cc_rank(b.complexity)}, {b.complexity})"
                    )
    assert not worst, "functions too complex to follow (radon E or F):\n" + "\n".join(worst)


def test_long_functions_say_why() -> None:
    long = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node) or ""
            body = node.body[1:] if doc else node.body
            lines = node.end_lineno - body[0].lineno + 1 if body else 0
            if lines > MAX_FUNCTION_LINES and "long because" not in doc.lower():
                long.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, (
        f"functions over {MAX_FUNCTION_LINES} lines whose docstring does not say why ('long because ...'):\n"
        + "\n".join(long)
    )
