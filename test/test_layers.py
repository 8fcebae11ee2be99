"""The package's layers import in one direction only, and every module imports on its own.

The order below is docs/design.md's picture. A module may import its own part and the parts
listed before it, never one listed after it (checked on the source with `ast`, imports inside
functions included). And importing every module first in a process of its own works, which an
import cycle inside a part would break ("partially initialized module").
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

LAYERS = [
    ["core"],
    ["dialects"],
    ["quant"],
    ["kernels", "schedule"],
    ["chip"],
    ["passes"],
    ["pipelines"],
    ["frontend"],
    ["backend"],
    ["eval"],
    ["tools"],
    ["bench"],
]
RANK = {part: rank for rank, parts in enumerate(LAYERS) for part in parts}


def _modules() -> dict[str, Path]:
    """harden.<part>.<module> (and bench.<module>) -> source file."""
    found = {}
    for part in RANK:
        for path in sorted((REPO / part).glob("*.py")):
            package = "bench" if part == "bench" else f"harden.{part}"
            found[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    return found


MODULES = _modules()


def _part_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "bench":
        return "bench"
    if parts[0] == "harden" and len(parts) > 1:
        return parts[1]
    return None


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def test_every_part_is_in_a_layer():
    folders = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert folders - {"test"} == set(RANK)


def test_no_upward_import():
    upward = []
    for module, path in MODULES.items():
        own = RANK[_part_of(module)]
        for line, imported in _imports(path):
            part = _part_of(imported)
            if part in RANK and RANK[part] > own:
                upward.append(f"{path.relative_to(REPO)}:{line} imports {imported} ({part} is above {_part_of(module)})")
    assert not upward, "\n".join(upward)


def test_the_check_finds_an_upward_import(tmp_path):
    """The walk sees imports inside functions too (as the old policy pass had them)."""
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from harden.eval.evaluate import sample_sequences\n")
    assert _imports(source) == [(2, "harden.eval.evaluate.sample_sequences")]


def _import_alone(module: str) -> tuple[str, str | None]:
    result = subprocess.run(
        [sys.executable, "-c", f"import {module}"], capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin"}
    )
    return module, None if result.returncode == 0 else (result.stderr.strip().splitlines() or ["?"])[-1]


# Imports each module first in a process of its own, forked from one that has loaded the
# third-party packages only: they take no part in a cycle among harden's modules, and
# loading torch once instead of once per module is what makes the check take seconds.
_IMPORT_EACH_FORKED = """
import importlib, json, os, sys
for name in json.loads(sys.argv[2]):
    importlib.import_module(name)
assert not [m for m in sys.modules if m.split(".")[0] in ("harden", "bench")], "a third-party package imported harden"
failures = {}
for module in json.loads(sys.argv[1]):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(module)
            os._exit(0)
        except BaseException as e:
            os.write(write, f"{type(e).__name__}: {e}".encode()[:4000])
            os._exit(1)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        message = f.read().decode(errors="replace")
    if os.waitpid(pid, 0)[1] != 0:
        failures[module] = message or "the import process died"
print(json.dumps(failures))
"""


THIRD_PARTY = ["numpy", "torch", "torch.export", "torch_mlir.ir", "torch_mlir.dialects.torch", "torch_mlir.extras.fx_importer",
               "iree.compiler", "iree.compiler.tools", "iree.runtime", "ml_dtypes", "sympy", "transformers",
               "transformers.models.llama.modeling_llama", "safetensors", "gguf", "tokenizers", "matplotlib.pyplot"]


def test_every_module_imports_first_on_its_own():
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FORKED, json.dumps(sorted(MODULES)), json.dumps(THIRD_PARTY)],
                            capture_output=True, text=True, cwd=REPO, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{m}: {why}" for m, why in failures.items())


def test_the_forked_check_finds_a_cycle(tmp_path):
    """Two modules importing each other's names fail when either is imported first."""
    (tmp_path / "cyc_a.py").write_text("from cyc_b import B\nA = 1\n")
    (tmp_path / "cyc_b.py").write_text("from cyc_a import A\nB = 2\n")
    result = subprocess.run([sys.executable, "-c", _IMPORT_EACH_FORKED, json.dumps(["cyc_a", "json"]), "[]"], capture_output=True, text=True,
                            cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(failures) == ["cyc_a"] and "partially initialized module" in failures["cyc_a"]


@pytest.mark.parametrize("module", ["harden.backend.custom_dispatch", "harden.passes.lower_harden"])
def test_the_old_cycle_is_gone(module):
    assert _import_alone(module)[1] is None
