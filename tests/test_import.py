"""`import paperzoo` is cheap (no torch, no transformers: the `paperzoo` command answers at once) and still exposes
every public class and subpackage as an attribute, imported on first access."""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import subprocess
import sys

import pytest

import paperzoo

# what `import paperzoo` must not import: each costs from 0.1 s (numpy) to 5 s (transformers' modeling_utils)
HEAVY = ("torch", "transformers", "peft", "huggingface_hub", "numpy", "pandas", "sklearn", "scipy", "triton")


def run_fresh(code: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return result


def heavy_modules_after(code: str) -> list[str]:
    """The HEAVY top-level packages in sys.modules of a fresh interpreter after running `code`."""
    probe = (f"import sys\n{code}\n"
             f"print(__import__('json').dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))")
    return json.loads(run_fresh(probe).stdout.splitlines()[-1])


def test_import_paperzoo_imports_nothing_heavy():
    assert heavy_modules_after("import paperzoo") == []


def test_import_transformers_after_paperzoo_stays_lazy():
    # transformers' top level is lazy (no torch); the registration hooks must not make it import more
    alone = heavy_modules_after("import transformers")
    assert "torch" not in alone
    assert heavy_modules_after("import paperzoo, transformers") == alone


def test_cli_help_does_not_import_torch():
    code = ("from paperzoo.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit as stop:\n    assert stop.code == 0, stop.code\n")
    assert heavy_modules_after(code) == []


def test_cli_version():
    result = run_fresh("from paperzoo.cli import main; main(['--version'])")
    assert result.stdout == f"paperzoo {importlib.metadata.version('paperzoo')}\n"
    assert paperzoo.__version__ == importlib.metadata.version("paperzoo")


@pytest.mark.parametrize("name, module", [
    ("RetNetConfig", "paperzoo.configuration.retnet"),
    ("RetNetModel", "paperzoo.modeling.retnet"),
    ("RetNetForCausalLM", "paperzoo.modeling.retnet"),
    ("RetNetForSequenceClassification", "paperzoo.modeling.retnet"),
    ("RRLConfig", "paperzoo.configuration.rrl"),
    ("RRLForTabularClassification", "paperzoo.modeling.rrl"),
    ("RRLProcessor", "paperzoo.processors.rrl"),
    ("RRLClassifier", "paperzoo.estimators.rrl"),
    ("TabularClassificationPipeline", "paperzoo.pipelines.tabular_classification"),
])
def test_public_classes_are_attributes(name, module):
    assert getattr(paperzoo, name) is getattr(importlib.import_module(module), name)
    assert name in paperzoo.__all__ and name in dir(paperzoo)


def test_subpackages_are_attributes():
    assert paperzoo.hub.export is importlib.import_module("paperzoo.hub.export").export
    assert paperzoo.metrics.available() == ["full_ranking", "kbqa", "macro_f1", "sampled_ranking"]
    assert {"hub", "kbqa", "metrics", "modeling", "pipelines"} <= set(dir(paperzoo))
    assert paperzoo.kbqa.OxigraphBackend is importlib.import_module("paperzoo.kbqa.backends").OxigraphBackend
    assert {"diagnosis", "llm", "llmrec"} <= set(dir(paperzoo))
    comparison = importlib.import_module("paperzoo.diagnosis.comparison")
    assert paperzoo.diagnosis.compare is comparison.compare  # the function, never its module


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="'paperzoo' has no attribute 'RetNetForImages'"):
        paperzoo.RetNetForImages  # noqa: B018
    assert not hasattr(paperzoo, "cli_main")
