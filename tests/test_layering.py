"""The layering rule (README's layout table): runtime/ is torch-free and imports no other spamcam
package; edge_app/ imports only runtime; training/ only runtime; export/ and calibration/ only
training and runtime; engines/ (build-engine, compare-backends) comes after both."""
import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
ALLOWED = {
    "runtime": {"runtime"},
    "edge_app": {"runtime", "edge_app"},
    "training": {"runtime", "training"},
    "export": {"training", "runtime", "export"},
    "calibration": {"training", "runtime", "calibration"},
    "engines": {"export", "calibration", "training", "runtime", "engines"},
}
TORCH_FREE = ("runtime", "edge_app")


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


@pytest.mark.parametrize("package", list(ALLOWED))
def test_packages_import_only_lower_layers(package):
    for path in (ROOT / package).rglob("*.py"):
        for name in _imports(path):
            if name in ALLOWED:
                assert name in ALLOWED[package], f"{path.relative_to(ROOT)} imports {name}"
            if package in TORCH_FREE:
                assert name not in ("torch", "torchvision"), f"{path.relative_to(ROOT)} imports {name}"


def test_runtime_imports_with_torch_unavailable():
    """As on a Jetson without PyTorch: every runtime module imports with torch blocked."""
    modules = sorted(p.stem for p in (ROOT / "runtime").glob("*.py") if p.stem != "__init__")
    code = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None\n"
            + "".join(f"import runtime.{m}\n" for m in modules) + "print('ok')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
