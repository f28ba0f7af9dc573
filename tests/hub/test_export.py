"""paperzoo.hub.export: the folder loads, in a fresh process where paperzoo cannot be imported, to the same logits and
generations as the in-process model; the card carries its metadata; a failed export leaves nothing behind; the
flattening rules hold on a synthetic package, checked with transformers' own loader."""

from __future__ import annotations

import ast
import importlib
import json
import re
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import PreTrainedTokenizerFast
from transformers.dynamic_module_utils import get_imports

import paperzoo
from paperzoo import RetNetConfig, RetNetForCausalLM

from .fakehub import run_python

export_module = importlib.import_module("paperzoo.hub.export")  # `paperzoo.hub.export` is the function
cards_module = importlib.import_module("paperzoo.hub.cards")

SENTENCES = [
    "Retention is a successor to attention for large language models.",
    "The recurrent state replaces the key value cache during decoding.",
    "Chunkwise retention trains in parallel and decodes in constant memory.",
    "Every head decays with its own gamma.",
]
INPUT_IDS = [[5, 17, 42, 8, 96, 3, 60], [1, 2, 3, 4, 5, 6, 7]]
AUTO_CLASSES = ("AutoConfig", "AutoModel", "AutoModelForCausalLM", "AutoModelForSequenceClassification")
FLAT_FILES = {
    "modeling_retnet.py", "configuration_retnet.py", "modeling_layers.py", "modeling_cache.py", "modeling_inputs.py",
    "modeling_hub_mixin.py", "kernels_retention.py",
    "kernels_retention_reference.py", "kernels__registry.py", "_env.py",
    # the fused training loss (RetNetConfig.fused_linear_cross_entropy)
    "kernels_linear_cross_entropy.py", "kernels_linear_cross_entropy_reference.py",
}
if (Path(paperzoo.__file__).parent / "kernels" / "retention" / "triton.py").is_file():
    FLAT_FILES |= {"kernels_retention_triton.py", "kernels__triton_common.py", "kernels_linear_cross_entropy_triton.py"}


def tiny_retnet(seed: int = 0) -> RetNetForCausalLM:
    torch.manual_seed(seed)
    config = RetNetConfig(vocab_size=97, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=48)
    return RetNetForCausalLM(config).eval()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(SENTENCES, trainers.BpeTrainer(vocab_size=97, special_tokens=["<eos>", "<unk>", "<pad>"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>", pad_token="<pad>")
    assert len(fast) <= 97 and fast.eos_token_id == 0
    return fast


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def card_snippet(readme: str) -> str:
    return re.search(r"```python\n(.*?)```", readme, re.S).group(1)


# ----------------------------------------------------------------------------------------------------------------------
# One export, loaded once in a fresh process without paperzoo

CHILD = r'''
import contextlib, io, json, re, sys
import torch
from transformers import (AutoConfig, AutoModel, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer)

folder, out_path = sys.argv[1], sys.argv[2]
ids = torch.tensor(json.loads(sys.argv[3]))
config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
base = AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
clf = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=True, num_labels=3).eval()
tok = AutoTokenizer.from_pretrained(folder)
with torch.no_grad():
    logits = lm(ids).logits
    hidden = base(ids).last_hidden_state
    clf_logits = clf(ids).logits
    greedy = lm.generate(ids[:1], max_new_tokens=12, do_sample=False)

snippet = re.search(r"```python\n(.*?)```", open(folder + "/README.md", encoding="utf-8").read(), re.S).group(1)
snippet = re.sub(r'^repo = ".*?"', "repo = " + repr(folder), snippet, count=1, flags=re.M)
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    exec(compile(snippet, "README.md", "exec"), {})

classes = [type(o) for o in (config, lm, base, clf)]
json.dump({
    "classes": [c.__module__ + "." + c.__name__ for c in classes],
    "config": {k: getattr(config, k) for k in ("model_type", "vocab_size", "hidden_size", "num_hidden_layers",
                                                "num_attention_heads", "intermediate_size", "value_dim")},
    "logits": logits.tolist(),
    "hidden": hidden.tolist(),
    "clf_shape": list(clf_logits.shape),
    "greedy": greedy.tolist(),
    "tokenized": tok(["Retention is a successor"])["input_ids"],
    "tokenizer_class": type(tok).__name__,
    "snippet_output": printed.getvalue(),
    "paperzoo_modules": sorted(m for m in sys.modules if m == "paperzoo" or m.startswith("paperzoo.")),
}, open(out_path, "w"))
'''


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, tokenizer = tiny_retnet(), tiny_tokenizer()
    folder = tmp_path_factory.mktemp("export") / "tiny-retnet"
    assert paperzoo.hub.export(model, folder, tokenizer=tokenizer) == folder
    return model, tokenizer, folder


@pytest.fixture(scope="module")
def child(exported, tmp_path_factory):
    _, _, folder = exported
    work = tmp_path_factory.mktemp("child")
    out = work / "out.json"
    run_python(CHILD, str(folder), str(out), json.dumps(INPUT_IDS), cwd=work, isolated=True,
               env={"HF_HOME": str(work / "hf"), "HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1"})
    return json.loads(out.read_text())


def test_folder_contents(exported):
    _, _, folder = exported
    names = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "config.json", "generation_config.json", "README.md", "tokenizer.json",
            "tokenizer_config.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl"))]
    assert {n for n in names if n.endswith(".py")} == FLAT_FILES
    assert not [p.name for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "paperzoo_retnet"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_retnet.RetNetConfig",
        "AutoModel": "modeling_retnet.RetNetModel",
        "AutoModelForCausalLM": "modeling_retnet.RetNetForCausalLM",
        "AutoModelForSequenceClassification": "modeling_retnet.RetNetForSequenceClassification",
    }
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["eos_token_id"] == 0


def test_flat_files_import_only_allowed_packages(exported):
    _, _, folder = exported
    allowed = {"torch", "transformers", "safetensors", "numpy"}
    for path in folder.glob("*.py"):
        source = path.read_text()
        tree = ast.parse(source)
        assert not [p for p in get_imports(path) if p not in allowed and p not in sys.stdlib_module_names], path.name
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                assert node.level in (0, 1), f"{path.name}:{node.lineno} imports from a parent package"
                if node.level:
                    assert node.module is None or "." not in node.module, f"{path.name}:{node.lineno}"
                assert not (node.module or "").startswith("paperzoo"), f"{path.name}:{node.lineno}"
                if node.level == 1 and node.module:
                    assert (folder / f"{node.module}.py").is_file(), f"{path.name}:{node.lineno}"


def test_triton_import_stays_inside_try(exported):
    _, _, folder = exported
    tree = ast.parse((folder / "kernels_retention.py").read_text())
    guarded = [node for t in ast.walk(tree) if isinstance(t, ast.Try) for s in t.body for node in ast.walk(s)
               if isinstance(node, ast.ImportFrom) and node.module == "kernels_retention_triton"]
    every = [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module == "kernels_retention_triton"]
    if "kernels_retention_triton.py" in FLAT_FILES:
        assert guarded and len(guarded) == len(every)
    else:  # no source yet: the guarded import became a raise ImportError inside the same try
        assert not every


def test_loads_without_paperzoo(exported, child):
    model, _, _ = exported
    assert child["paperzoo_modules"] == []
    assert all(c.startswith("transformers_modules.") for c in child["classes"]), child["classes"]
    assert [c.rsplit(".", 1)[1] for c in child["classes"]] == [
        "RetNetConfig", "RetNetForCausalLM", "RetNetModel", "RetNetForSequenceClassification"]
    assert child["config"] == {"model_type": "paperzoo_retnet", "vocab_size": 97, "hidden_size": 32,
                               "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 48,
                               "value_dim": 48}
    ids = torch.tensor(INPUT_IDS)
    with torch.no_grad():
        logits = model(ids).logits
        hidden = model.model(ids).last_hidden_state
    torch.testing.assert_close(torch.tensor(child["logits"]), logits, atol=1e-5, rtol=0)
    torch.testing.assert_close(torch.tensor(child["hidden"]), hidden, atol=1e-5, rtol=0)
    assert child["clf_shape"] == [2, 3]


def test_greedy_generation_matches(exported, child):
    model, _, _ = exported
    with torch.no_grad():
        greedy = model.generate(torch.tensor(INPUT_IDS[:1]), max_new_tokens=12, do_sample=False)
    assert child["greedy"] == greedy.tolist()


def test_tokenizer_round_trip(exported, child):
    _, tokenizer, _ = exported
    assert child["tokenized"] == tokenizer(["Retention is a successor"])["input_ids"]
    assert child["tokenizer_class"] in ("PreTrainedTokenizerFast", "TokenizersBackend")


def test_card_snippet_runs_and_matches(exported, child):
    model, tokenizer, folder = exported
    inputs = tokenizer(["Retention is"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    assert child["snippet_output"] == tokenizer.decode(out[0], skip_special_tokens=True) + "\n"


def test_card_metadata(exported):
    model, _, folder = exported
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "transformers"
    assert data.license == "apache-2.0"
    assert data.pipeline_tag == "text-generation"
    assert {"paperzoo", "retnet", "custom_code", "arxiv:2307.08621"} <= set(data.tags)
    text = card.text
    assert "arxiv.org/abs/2307.08621" in text
    assert "AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True)" in text
    assert "model.generate(" in text and "AutoTokenizer.from_pretrained(repo, trust_remote_code=True)" in text
    n_params = sum(p.numel() for p in model.parameters())
    for row in ("| vocabulary | 97 |", "| hidden size d | 32 |", "| layers | 2 |", "| FFN (GLU, swish) | 48 |",
                f"| parameters | {n_params:,} (float32) |"):
        assert row in text, row
    for needle in ("torchscale 0.3.0", "flash-linear-attention", "not a KV cache", "Triton kernels only on CUDA"):
        assert needle in text, needle


def test_card_without_tokenizer_uses_token_ids(tmp_path):
    card = cards_module.render_card(tiny_retnet(), repo_id="someone/tiny")
    snippet = card_snippet(str(card))
    assert 'repo = "someone/tiny"' in snippet and "AutoTokenizer" not in snippet
    assert "torch.tensor([[1, 2, 3, 4]])" in snippet


def test_card_rejects_foreign_model_type():
    with pytest.raises(ValueError, match="paperzoo model type"):
        cards_module.card_stem(type("C", (), {"model_type": "llama"})())


# ----------------------------------------------------------------------------------------------------------------------
# Atomicity


def _fail(*args, **kwargs):
    raise RuntimeError("injected failure")


FAILURES = {
    # while save_pretrained writes the weights (config.json is already in the temporary folder)
    "weights": lambda mp: mp.setattr(importlib.import_module("transformers.modeling_utils"), "safe_save_file", _fail),
    # after the weights and the flat code, while rendering the card
    "card": lambda mp: mp.setattr(cards_module, "render_card", _fail),
    # at the very end: validation refuses the bundle
    "validation": lambda mp: mp.setattr(export_module, "ALLOWED_PACKAGES", frozenset()),
}


@pytest.mark.parametrize("stage", sorted(FAILURES))
def test_failed_export_leaves_old_folder_untouched(tmp_path, monkeypatch, stage):
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "config.json").write_text('{"old": true}')
    (folder / "sub" / "keep.txt").write_text("previous export")
    before, siblings = snapshot(folder), sorted(p.name for p in tmp_path.iterdir())
    FAILURES[stage](monkeypatch)
    with pytest.raises((RuntimeError, ValueError)):
        paperzoo.hub.export(tiny_retnet(), folder)
    assert snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no .out.tmp-* left


def test_failed_first_export_creates_nothing(tmp_path, monkeypatch):
    FAILURES["card"](monkeypatch)
    with pytest.raises(RuntimeError):
        paperzoo.hub.export(tiny_retnet(), tmp_path / "new")
    assert list(tmp_path.iterdir()) == []


def test_export_replaces_existing_folder(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "stale.txt").write_text("old")
    paperzoo.hub.export(tiny_retnet(), folder)
    assert not (folder / "stale.txt").exists() and (folder / "model.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_export_refuses_a_file_and_unregistered_classes(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(export_module.ExportError, match="not a folder"):
        paperzoo.hub.export(tiny_retnet(), target)
    assert target.read_text() == "x"

    class Unregistered(RetNetForCausalLM):
        pass

    with pytest.raises(export_module.ExportError):
        paperzoo.hub.export(Unregistered(tiny_retnet().config), tmp_path / "u")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


# ----------------------------------------------------------------------------------------------------------------------
# Flattening rules on a synthetic package (names unique per test: the import system caches finders)


def write_package(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    importlib.invalidate_caches()


SYNTH = {
    "pzsynth/__init__.py": "raise RuntimeError('the top-level __init__ must not run in a bundle')\n",
    "pzsynth/_env.py": """
        def flag():
            return 3
    """,
    "pzsynth/util/__init__.py": "raise RuntimeError('an intermediate __init__ must not run in a bundle')\n",
    "pzsynth/util/helpers.py": """
        def double(x):
            return 2 * x


        def triple(x):
            return 3 * x
    """,
    "pzsynth/ops/__init__.py": """
        from __future__ import annotations

        import math

        from .. import _env
        from ..util.helpers import (
            double,
            triple as thrice,
        )

        try:
            from .fast import fast_op
        except ImportError:
            fast_op = None
        try:
            from .missing_kernel import nope
        except ImportError:
            nope = None


        def op(x):
            return thrice(double(x)) + _env.flag() + int(math.sqrt(0))
    """,
    "pzsynth/ops/fast.py": """
        import json
        import pz_package_that_is_not_installed
        from .. import _env


        def fast_op(x):
            return x
    """,
    "pzsynth/models/thing.py": '''
        """A model file. A docstring line that starts with an indented word is fine."""
        import pzsynth.util.helpers as h
        from pzsynth.ops import op


        class Thing:
            def run(self, x):
                from ..util import helpers

                return op(x) + h.double(x) + helpers.triple(0)
    ''',
}

SYNTH_CHILD = r'''
import json, sys
from transformers.dynamic_module_utils import check_imports, get_class_from_dynamic_module

folder, out_path = sys.argv[1], sys.argv[2]
Thing = get_class_from_dynamic_module("models_thing.Thing", folder)
ops = sys.modules[Thing.__module__.rsplit(".", 1)[0] + ".ops"]
check_imports(folder + "/ops_fast.py")  # what the Hub path runs on every file: the optional import is exempt
json.dump({"run": Thing().run(5), "fast_op": ops.fast_op, "nope": ops.nope, "module": Thing.__module__,
           "synth_loaded": sorted(m for m in sys.modules if m.startswith("pzsynth"))}, open(out_path, "w"))
'''


def test_flattening_rules_load_with_transformers(tmp_path, monkeypatch):
    write_package(tmp_path / "src", SYNTH)
    monkeypatch.syspath_prepend(str(tmp_path / "src"))
    files = export_module.build_remote_code(["pzsynth.models.thing"])
    assert set(files) == {"models_thing.py", "ops.py", "util_helpers.py", "_env.py", "ops_fast.py"}

    ops, fast, thing = files["ops.py"], files["ops_fast.py"], files["models_thing.py"]
    assert "from ._env import __name__ as _paperzoo_flat__env\nfrom . import _env\n" in ops
    assert "from .util_helpers import double, triple as thrice\n" in ops
    assert "    from .ops_fast import fast_op\n" in ops
    assert "    raise ImportError('pzsynth.ops.missing_kernel is not part of this bundle" in ops
    assert "try:\n    import pz_package_that_is_not_installed\nexcept ImportError:" in fast
    assert "import json\n" in fast  # standard library: left alone
    assert ("from .util_helpers import __name__ as _paperzoo_flat_util_helpers\n"
            "from . import util_helpers as h\n") in thing
    assert "from .ops import op\n" in thing
    assert ("        from .util_helpers import __name__ as _paperzoo_flat_util_helpers\n"
            "        from . import util_helpers as helpers\n") in thing
    assert thing.startswith("# Generated by paperzoo.hub.export from pzsynth/models/thing.py (pzsynth unknown)")
    assert "Optional module" in fast.splitlines()[1] and "Optional" not in ops.splitlines()[1]

    bundle = tmp_path / "bundle"
    bundle.mkdir()
    for name, text in files.items():
        (bundle / name).write_text(text)
    export_module.validate_remote_code(bundle, ["models_thing"])

    out = tmp_path / "out.json"
    run_python(SYNTH_CHILD, str(bundle), str(out), cwd=tmp_path, isolated=True,
               env={"HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
                    "HF_HUB_OFFLINE": "1"})
    result = json.loads(out.read_text())
    assert result == {"run": 2 * 3 * 5 + 3 + 10 + 0, "fast_op": None, "nope": None, "module": result["module"],
                      "synth_loaded": []}
    assert result["module"].startswith("transformers_modules.bundle.")


BAD_PACKAGES = {
    "bare_import": ({"m.py": "import {pkg}.other\n", "other.py": ""}, "binds the top-level package"),
    "not_own_line": ({"m.py": "x = 1; from .other import y\n", "other.py": "y = 1\n"}, "its own line"),
    "missing_module": ({"m.py": "from .nowhere import y\n"}, "has no source file"),
    "top_level_names": ({"m.py": "from . import VERSION\n", "__init__.py": "VERSION = 1\n"}, "top-level package"),
    "collision": ({"m.py": "from .a.b_c import x\nfrom .a_b.c import y\n", "a/__init__.py": "",
                   "a/b_c.py": "x = 1\n", "a_b/__init__.py": "", "a_b/c.py": "y = 1\n"}, "both flatten to a_b_c.py"),
    "beyond_top": ({"m.py": "from ... import x\n"}, "beyond top-level package"),
}


@pytest.mark.parametrize("case", sorted(BAD_PACKAGES))
def test_flattening_refuses(tmp_path, monkeypatch, case):
    files, message = BAD_PACKAGES[case]
    pkg = f"pzbad_{case}"
    layout = {f"{pkg}/__init__.py": ""}
    layout.update({f"{pkg}/{rel}": text.replace("{pkg}", pkg) for rel, text in files.items()})
    write_package(tmp_path, layout)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(export_module.ExportError, match=message):
        export_module.build_remote_code([f"{pkg}.m"])


def test_validation_catches_a_stray_relative_import(tmp_path):
    (tmp_path / "modeling_x.py").write_text('"""Docs.\nfrom .nowhere import thing\n"""\nimport torch\n')
    with pytest.raises(export_module.ExportError, match="nowhere.py"):
        export_module.validate_remote_code(tmp_path, ["modeling_x"])
    (tmp_path / "modeling_x.py").write_text("import scipy\n")
    with pytest.raises(export_module.ExportError, match="scipy"):
        export_module.validate_remote_code(tmp_path, ["modeling_x"])
