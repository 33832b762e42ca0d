"""The layers read bottom-up, checked from the source so they stay that way.

core -> config -> stages (sources, inference, tracking, identities, analytics, publishing,
snapshots) -> pipeline -> metrics -> control -> app (app, check, benchmarks) -> cli. A module may
import its own layer or lower ones; there are no import cycles, lazy imports inside functions
included.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "streamer"

LAYERS: dict[str, int] = {
    "core": 0,
    "config": 1,
    "sources": 2,
    "inference": 2,
    "tracking": 2,
    "identities": 2,
    "analytics": 2,
    "publishing": 2,
    "snapshots": 2,
    "pipeline": 3,
    "metrics": 4,
    "control": 5,
    "app": 6,
    "assembly": 6,
    "check": 6,
    "benchmarks": 6,
    "cli": 7,
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every `streamer.*` module the file imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("streamer"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("streamer"):
            found.add(node.module)
            # `from streamer.cli import models` imports the submodule streamer.cli.models
            found.update(
                f"{node.module}.{a.name}"
                for a in node.names
                if (PACKAGE.parent / node.module.replace(".", "/") / f"{a.name}.py").exists()
            )
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "streamer"


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path) if m in modules} for name, path in modules.items()}


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = {m for m in graph() if layer_of(m) not in LAYERS and m != "streamer"}
    assert not unplaced, f"modules outside every layer: {sorted(unplaced)}; add them to LAYERS"


def test_no_module_imports_a_higher_layer() -> None:
    uphill = [
        f"{module} -> {imported}"
        for module, imported_modules in graph().items()
        if module != "streamer"
        for imported in imported_modules
        if LAYERS[layer_of(imported)] > LAYERS[layer_of(module)]
    ]
    assert not uphill, "imports running uphill:\n" + "\n".join(sorted(uphill))


@pytest.mark.parametrize(
    "stage", ["sources", "inference", "tracking", "identities", "analytics", "publishing", "snapshots"]
)
def test_stages_never_import_the_pipeline_metrics_app_or_cli(stage: str) -> None:
    forbidden = ("pipeline", "metrics", "app", "check", "benchmarks", "cli")
    bad = [
        f"{module} -> {imported}"
        for module, imported_modules in graph().items()
        if layer_of(module) == stage
        for imported in imported_modules
        if layer_of(imported) in forbidden
    ]
    assert not bad, "\n".join(bad)


# What a component is: the pipeline, the metrics and the control layer know components only
# through `streamer/core/interfaces.py`; only the assembly names concrete ones.
CONCRETE_COMPONENTS = (
    "streamer.sources.camera",
    "streamer.inference.detector",
    "streamer.identities.stage",
    "streamer.analytics.stage",
    "streamer.snapshots.stage",
    "streamer.publishing.jsonl",
    "streamer.publishing.mqtt",
    "streamer.publishing.redis_sink",
    "streamer.publishing.broker",
)


@pytest.mark.parametrize("layer", ["pipeline", "metrics", "control"])
def test_only_the_assembly_names_concrete_components(layer: str) -> None:
    bad = [
        f"{module} -> {imported}"
        for module, imported_modules in graph().items()
        if layer_of(module) == layer
        for imported in imported_modules
        if imported in CONCRETE_COMPONENTS
    ]
    assert not bad, "\n".join(bad)


def test_no_component_is_read_with_getattr() -> None:
    """What the pipeline relies on is in the contracts, not discovered with getattr/hasattr."""
    readers = [*PACKAGE.joinpath("pipeline").glob("*.py"), PACKAGE / "assembly.py", PACKAGE / "app.py",
               PACKAGE / "check.py"]
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in readers
        for node in ast.walk(ast.parse(path.read_text("utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        and node.func.id in {"getattr", "hasattr"}
    ]
    assert not found, found


def test_config_imports_no_stage() -> None:
    bad = [
        f"{module} -> {imported}"
        for module, imported_modules in graph().items()
        if layer_of(module) == "config"
        for imported in imported_modules
        if layer_of(imported) not in ("config", "core")
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    edges = graph()
    # A package's __init__ importing its own submodules is how packages re-export; not a cycle.
    for module in edges:
        edges[module] = {
            m for m in edges[module] if m != module and not m.startswith(f"{module}.")
        }
    visiting: list[str] = []
    done: set[str] = set()
    cycles: list[str] = []

    def visit(module: str) -> None:
        if module in done:
            return
        if module in visiting:
            cycles.append(" -> ".join([*visiting[visiting.index(module):], module]))
            return
        visiting.append(module)
        for imported in sorted(edges[module]):
            visit(imported)
        visiting.pop()
        done.add(module)

    for module in sorted(edges):
        visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)
