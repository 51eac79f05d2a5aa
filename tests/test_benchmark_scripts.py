"""The benchmark scripts run as `python benchmarks/X.py`, which puts benchmarks/ first on sys.path: a
script named like an installed package hides that package from everything the benchmark imports.
(benchmarks/triton.py once hid OpenAI's `triton`, so torchvision's import failed in every benchmark
that trains a torchvision backbone.) benchmarks/edge_app.py is named after our own package on purpose
(the issues ask for it by that name); it and its neighbours take benchmarks/ off the front of
sys.path before importing the package, so only clashes with modules from outside the repository count."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def _installed_elsewhere(name: str) -> str | None:
    """Where `name` would be imported from with benchmarks/ off the path, or None."""
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCHMARKS]
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    finally:
        sys.path[:] = saved
    if spec is None:
        return None
    where = spec.origin or next(iter(spec.submodule_search_locations or []), name)
    return None if Path(where).resolve().is_relative_to(ROOT) and not {"site-packages", "dist-packages"} & set(Path(where).parts) else where


def test_no_benchmark_script_hides_an_installed_module():
    clashes = {}
    for script in sorted(BENCHMARKS.glob("*.py")):
        where = _installed_elsewhere(script.stem)
        if where is not None:
            clashes[script.name] = where
    assert not clashes, f"benchmark scripts named like installed modules (rename them): {clashes}"
