"""`model.save_pretrained(folder)` and `model.push_to_hub(repo)` write the self-contained folder of paperzoo.hub.export
(auto_map, flat remote code, card, safetensors): a folder saved the usual transformers way, a Trainer checkpoint and a
repo pushed to the loopback Hub load with trust_remote_code=True in fresh processes where paperzoo cannot be imported,
to the in-process model's logits and generations; a model loaded from such a bundle saves again through transformers'
own remote-code path; existing folders keep the files the save does not write, and a failed save changes nothing.

The pushes run in this process with huggingface_hub's endpoint pointed at the fake Hub (HfApi reads
`constants.ENDPOINT` when it is created, so patching the constant is enough for uploads); the downloads run in fresh
processes with HF_ENDPOINT set from the start.
"""

from __future__ import annotations

import ast
import importlib
import json
import os
from pathlib import Path

import pytest
import torch
from huggingface_hub import HfApi, ModelCard
from transformers import Trainer, TrainingArguments
from transformers.dynamic_module_utils import get_imports

from paperzoo import RRLConfig, RRLForTabularClassification

from .fakehub import FakeHub, run_python
from .test_export import INPUT_IDS, snapshot, tiny_retnet
from .test_push import hub_env

export_module = importlib.import_module("paperzoo.hub.export")
mixin_module = importlib.import_module("paperzoo.modeling.hub_mixin")
modeling_utils = importlib.import_module("transformers.modeling_utils")

PUSHED, PUSHED_SAVE = "testuser/pushed-retnet", "testuser/saved-and-pushed"
RRL_ROWS = [[1, 0, 0, 1, 0.3, -1.2, 2.0], [0, 1, 1, 0, -0.7, 0.4, 0.0], [1, 1, 0, 0, 1.5, 0.1, -0.3]]


def tiny_rrl(seed: int = 0) -> RRLForTabularClassification:
    torch.manual_seed(seed)
    config = RRLConfig(num_discrete_features=4, num_continuous_features=3, num_thresholds=4, layer_widths=(6,),
                       num_labels=3, kernel_backend="reference")
    return RRLForTabularClassification(config).eval()


def lm_outputs(model, ids=INPUT_IDS) -> dict:
    ids = torch.tensor(ids)
    with torch.no_grad():
        return {"logits": model(ids).logits, "greedy": model.generate(ids[:1], max_new_tokens=10, do_sample=False)}


def isolated(script: str, work: Path, *args: str, env: dict | None = None) -> dict:
    """Run `script` where paperzoo cannot be imported; it writes a JSON result to its first argument."""
    out = work / "out.json"
    run_python(script, str(out), *args, cwd=work, isolated=True,
               env={"HF_HOME": str(work / "hf"), "HF_MODULES_CACHE": str(work / "modules"), "HF_HUB_OFFLINE": "1",
                    **(env or {})})
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        yield server


@pytest.fixture
def on_fake_hub(hub, monkeypatch, tmp_path):
    """huggingface_hub in this process talks to the fake Hub, with the fake's token."""
    constants = importlib.import_module("huggingface_hub.constants")
    monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "agent_harnesses.json"))  # not ~/.cache
    monkeypatch.setenv("HF_TOKEN", "dummy")
    return hub


# ----------------------------------------------------------------------------------------------------------------------
# Folders written by save_pretrained (and by Trainer through it), loaded without paperzoo

@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    work = tmp_path_factory.mktemp("saved")
    retnet, rrl = tiny_retnet(seed=2), tiny_rrl(seed=3)
    retnet.save_pretrained(work / "retnet")
    rrl.save_pretrained(work / "rrl")

    # Trainer's call: a state dict (here another model's, so that it visibly wins over the model's own weights) into
    # a checkpoint folder that already holds the trainer's files
    other = tiny_retnet(seed=4)
    ckpt = work / "checkpoint-7"
    ckpt.mkdir()
    (ckpt / "optimizer.pt").write_bytes(b"optimizer state")
    (ckpt / "trainer_state.json").write_text('{"global_step": 7}')
    retnet.save_pretrained(ckpt, state_dict=other.state_dict(), is_main_process=True, safe_serialization=True,
                           max_shard_size="50GB")

    # a real Trainer run that checkpoints
    trained = tiny_retnet(seed=5).train()
    rows = [{"input_ids": torch.tensor(r), "labels": torch.tensor(r)} for r in INPUT_IDS * 2]
    args = TrainingArguments(output_dir=str(work / "trainer"), max_steps=2, save_steps=2, per_device_train_batch_size=2,
                             report_to=[], use_cpu=True, logging_strategy="no", disable_tqdm=True, learning_rate=0.05)
    Trainer(model=trained, args=args, train_dataset=rows).train()
    trained.eval()
    return {"work": work, "retnet": retnet, "rrl": rrl, "other": other, "trained": trained, "ckpt": ckpt,
            "trainer_ckpt": work / "trainer" / "checkpoint-2"}


LOAD = r'''
import json, os, sys
import torch
from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

out_path, folders = sys.argv[1], json.loads(sys.argv[2])
ids, rows = torch.tensor(json.loads(sys.argv[3])), json.loads(sys.argv[4])
result = {}
for name in ("retnet", "ckpt", "trainer_ckpt"):
    lm = AutoModelForCausalLM.from_pretrained(folders[name], trust_remote_code=True).eval()
    with torch.no_grad():
        result[name] = {"class": type(lm).__module__ + "." + type(lm).__name__, "logits": lm(ids).logits.tolist(),
                        "greedy": lm.generate(ids[:1], max_new_tokens=10, do_sample=False).tolist()}
    if name == "retnet":
        base = AutoModel.from_pretrained(folders[name], trust_remote_code=True).eval()
        with torch.no_grad():
            result["retnet_base"] = base(ids).last_hidden_state.tolist()
        lm.save_pretrained(folders["resaved"])  # a bundle-loaded model: transformers' own custom_object_save path
        result["resaved_files"] = sorted(os.listdir(folders["resaved"]))
rrl = AutoModel.from_pretrained(folders["rrl"], trust_remote_code=True).eval()
with torch.no_grad():
    result["rrl"] = {"class": type(rrl).__module__ + "." + type(rrl).__name__,
                     "logits": rrl(input_features=torch.tensor(rows)).logits.tolist()}
result["config_class"] = type(AutoConfig.from_pretrained(folders["rrl"], trust_remote_code=True)).__name__
result["paperzoo_modules"] = sorted(m for m in sys.modules if m == "paperzoo" or m.startswith("paperzoo."))
json.dump(result, open(out_path, "w"))
'''


@pytest.fixture(scope="module")
def loaded(saved, tmp_path_factory):
    work = tmp_path_factory.mktemp("load")
    folders = {name: str(saved[name]) for name in ("ckpt", "trainer_ckpt")}
    folders.update(retnet=str(saved["work"] / "retnet"), rrl=str(saved["work"] / "rrl"),
                   resaved=str(saved["work"] / "resaved"))
    return isolated(LOAD, work, json.dumps(folders), json.dumps(INPUT_IDS), json.dumps(RRL_ROWS))


def test_save_pretrained_writes_the_export_folder(saved, tmp_path):
    """Same files and auto_map as paperzoo.hub.export of the same model (the card's repo id aside)."""
    folder = saved["work"] / "retnet"
    exported = export_module.export(saved["retnet"], tmp_path / "retnet")
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in exported.iterdir())
    for name in sorted(p.name for p in exported.iterdir()):
        if name != "README.md":
            assert (folder / name).read_bytes() == (exported / name).read_bytes(), name
    assert ModelCard.load(folder / "README.md").data.to_dict() == ModelCard.load(exported / "README.md").data.to_dict()
    config = json.loads((folder / "config.json").read_text())
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModel", "AutoModelForCausalLM",
                                       "AutoModelForSequenceClassification"}
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_bundle_does_not_contain_the_exporter(saved):
    for name in ("retnet", "rrl"):
        folder = saved["work"] / name
        code = {p.name for p in folder.glob("*.py")}
        assert "modeling_hub_mixin.py" in code
        assert not [n for n in code if n.startswith("hub_")], code  # nothing of paperzoo/hub/ (export, cards, push)
        for path in folder.glob("*.py"):
            tree = ast.parse(path.read_text())
            defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            assert not defined & {"export", "build_remote_code", "render_card", "push"}, path.name
        # the mixin imports nothing but the standard library: the exporter is found by name, only where installed
        assert set(get_imports(folder / "modeling_hub_mixin.py")) <= {"__future__", "importlib"}


def test_retnet_loads_without_paperzoo(saved, loaded):
    assert loaded["paperzoo_modules"] == []
    assert loaded["retnet"]["class"].startswith("transformers_modules.")
    expected = lm_outputs(saved["retnet"])
    torch.testing.assert_close(torch.tensor(loaded["retnet"]["logits"]), expected["logits"], atol=1e-5, rtol=0)
    assert loaded["retnet"]["greedy"] == expected["greedy"].tolist()
    with torch.no_grad():
        hidden = saved["retnet"].model(torch.tensor(INPUT_IDS)).last_hidden_state
    torch.testing.assert_close(torch.tensor(loaded["retnet_base"]), hidden, atol=1e-5, rtol=0)


def test_rrl_loads_without_paperzoo(saved, loaded):
    assert loaded["rrl"]["class"].startswith("transformers_modules.") and loaded["config_class"] == "RRLConfig"
    with torch.no_grad():
        expected = saved["rrl"](input_features=torch.tensor(RRL_ROWS)).logits
    torch.testing.assert_close(torch.tensor(loaded["rrl"]["logits"]), expected, atol=1e-6, rtol=0)
    folder = saved["work"] / "rrl"
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_rrl.RRLForTabularClassification"
    assert "custom_pipelines" not in config  # the pipeline needs the processor, which the model does not carry
    card = ModelCard.load(folder / "README.md")
    assert card.data.pipeline_tag == "tabular-classification" and "AutoModel.from_pretrained(repo" in card.text


def test_trainer_state_dict_save_keeps_the_trainer_files(saved, loaded):
    ckpt = saved["ckpt"]
    assert (ckpt / "optimizer.pt").read_bytes() == b"optimizer state"
    assert (ckpt / "trainer_state.json").read_text() == '{"global_step": 7}'
    assert (ckpt / "modeling_retnet.py").is_file() and (ckpt / "README.md").is_file()
    expected = lm_outputs(saved["other"])  # the state dict passed in, not the model's own weights
    torch.testing.assert_close(torch.tensor(loaded["ckpt"]["logits"]), expected["logits"], atol=1e-5, rtol=0)
    assert loaded["ckpt"]["greedy"] == expected["greedy"].tolist()


def test_trainer_checkpoint_loads_without_paperzoo(saved, loaded):
    ckpt = saved["trainer_ckpt"]
    assert {"optimizer.pt", "trainer_state.json", "modeling_retnet.py", "model.safetensors"} <= {
        p.name for p in ckpt.iterdir()}
    expected = lm_outputs(saved["trained"])
    torch.testing.assert_close(torch.tensor(loaded["trainer_ckpt"]["logits"]), expected["logits"], atol=1e-5, rtol=0)


RELOAD = r'''
import json, sys
import torch
from transformers import AutoModelForCausalLM

out_path, folder, ids = sys.argv[1], sys.argv[2], torch.tensor(json.loads(sys.argv[3]))
lm = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True).eval()
with torch.no_grad():
    json.dump({"class": type(lm).__module__, "logits": lm(ids).logits.tolist(),
               "greedy": lm.generate(ids[:1], max_new_tokens=10, do_sample=False).tolist()}, open(out_path, "w"))
'''


def test_bundle_loaded_model_saves_again(saved, loaded, tmp_path):
    """A model loaded from a bundle (no paperzoo) saves through transformers' custom_object_save: the copy is a
    bundle again, loading in another fresh process to the original logits."""
    folder = saved["work"] / "resaved"
    original = {p.name for p in (saved["work"] / "retnet").glob("*.py")}
    assert {n for n in loaded["resaved_files"] if n.endswith(".py")} == original
    config = json.loads((folder / "config.json").read_text())
    assert config["auto_map"]["AutoModelForCausalLM"] == "modeling_retnet.RetNetForCausalLM"
    result = isolated(RELOAD, tmp_path, str(folder), json.dumps(INPUT_IDS))
    assert result["class"].startswith("transformers_modules.resaved.")
    expected = lm_outputs(saved["retnet"])
    torch.testing.assert_close(torch.tensor(result["logits"]), expected["logits"], atol=1e-5, rtol=0)
    assert result["greedy"] == expected["greedy"].tolist()


# ----------------------------------------------------------------------------------------------------------------------
# Saving into an existing folder


def test_existing_readme_is_kept_and_stale_files_go(tmp_path):
    folder = tmp_path / "model"
    model = tiny_retnet()
    model.save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").is_file()
    (folder / "README.md").write_text("my own notes\n")
    (folder / "notes.txt").write_text("keep me")
    (folder / "kernels_old_name.py").write_text("# Generated by paperzoo.hub.export from paperzoo/x.py\n")
    (folder / "my_script.py").write_text("print('mine')\n")
    model.save_pretrained(folder)
    names = {p.name for p in folder.iterdir()}
    assert (folder / "README.md").read_text() == "my own notes\n"
    assert {"notes.txt", "my_script.py", "model.safetensors"} <= names
    assert not (set(shards) | {"model.safetensors.index.json", "kernels_old_name.py"}) & names
    assert not [n for n in names if n.startswith(".")]


def _fail(*args, **kwargs):
    raise RuntimeError("injected failure")


@pytest.mark.parametrize("stage", ["weights", "card"])
def test_failed_save_changes_nothing(tmp_path, monkeypatch, stage):
    folder = tmp_path / "model"
    tiny_retnet(seed=0).save_pretrained(folder)
    (folder / "README.md").unlink()  # so that the second save renders a card
    (folder / "optimizer.pt").write_bytes(b"state")
    before = snapshot(folder)
    if stage == "weights":
        monkeypatch.setattr(modeling_utils, "safe_save_file", _fail)
    else:
        monkeypatch.setattr(importlib.import_module("paperzoo.hub.cards"), "render_card", _fail)
    with pytest.raises(RuntimeError, match="injected failure"):
        tiny_retnet(seed=1).save_pretrained(folder)
    assert snapshot(folder) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_export_does_not_go_through_the_override(tmp_path, monkeypatch):
    """export builds on transformers' save_pretrained directly: the override calling export cannot loop."""
    monkeypatch.setattr(mixin_module.PaperzooHubMixin, "save_pretrained", _fail)
    folder = export_module.export(tiny_retnet(), tmp_path / "out")
    assert (folder / "model.safetensors").is_file() and (folder / "modeling_hub_mixin.py").is_file()


def test_save_into_a_file_is_refused(tmp_path):
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(ValueError, match="not a folder"):
        tiny_retnet().save_pretrained(target)
    assert target.read_text() == "x"


# ----------------------------------------------------------------------------------------------------------------------
# push_to_hub


@pytest.fixture(scope="module")
def pushed(hub, tmp_path_factory):
    """model.push_to_hub over a repo whose README is someone else's card; save_pretrained(push_to_hub=True) from a
    folder that holds other files."""
    constants = importlib.import_module("huggingface_hub.constants")
    model = tiny_retnet(seed=6)
    model.add_model_tags(["my-model-tag"])
    work = tmp_path_factory.mktemp("push")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(constants, "ENDPOINT", hub.endpoint)
        mp.setattr(constants, "HF_HUB_OFFLINE", False)
        mp.setattr(constants, "AGENT_HARNESSES_PATH", str(work / "agent_harnesses.json"))  # not the user's cache
        mp.setenv("HF_TOKEN", "dummy")
        api = HfApi()
        api.create_repo(PUSHED)
        api.upload_file(path_or_fileobj=b"---\nlicense: mit\n---\nSomeone's generic card\n", path_in_repo="README.md",
                        repo_id=PUSHED)
        info = model.push_to_hub(PUSHED, tags=["extra-tag"], commit_message="push from the test")
        folder = work / "ckpt"
        folder.mkdir()
        (folder / "optimizer.pt").write_bytes(b"not for the Hub")
        model.save_pretrained(folder, push_to_hub=True, repo_id=PUSHED_SAVE)
    return model, info, folder


DOWNLOAD = r'''
import json, sys
import torch
from transformers import AutoModelForCausalLM

out_path, ids = sys.argv[1], torch.tensor(json.loads(sys.argv[2]))
result = {}
for repo in sys.argv[3:]:
    lm = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True).eval()
    with torch.no_grad():
        result[repo] = {"class": type(lm).__module__, "logits": lm(ids).logits.tolist(),
                        "greedy": lm.generate(ids[:1], max_new_tokens=10, do_sample=False).tolist()}
result["paperzoo_modules"] = sorted(m for m in sys.modules if m == "paperzoo" or m.startswith("paperzoo."))
json.dump(result, open(out_path, "w"))
'''


def test_push_to_hub_uploads_the_bundle_with_the_paperzoo_card(hub, pushed):
    model, info, _ = pushed
    sha, files = hub.repos[PUSHED].head
    assert info.oid == sha
    assert {"config.json", "model.safetensors", "modeling_retnet.py", "modeling_hub_mixin.py", "README.md"} <= set(
        files)
    readme = files["README.md"].decode()
    assert "Someone's generic card" not in readme
    card = ModelCard(readme)
    assert card.data.license == "apache-2.0" and card.data.library_name == "transformers"
    assert {"paperzoo", "arxiv:2307.08621", "my-model-tag", "extra-tag"} <= set(card.data.tags)
    assert f'repo = "{PUSHED}"' in card.text
    assert json.loads(files["config.json"])["auto_map"]["AutoModelForCausalLM"] == "modeling_retnet.RetNetForCausalLM"


def test_save_pretrained_push_uploads_only_what_it_wrote(hub, pushed):
    _, _, folder = pushed
    files = hub.files(PUSHED_SAVE)
    assert "optimizer.pt" not in files
    assert set(files) == {p.name for p in folder.iterdir()} - {"optimizer.pt"}
    assert all(files[name] == (folder / name).read_bytes() for name in files)


def test_pushed_repos_load_without_paperzoo(hub, pushed, tmp_path):
    model, _, _ = pushed
    out = tmp_path / "out.json"
    run_python(DOWNLOAD, str(out), json.dumps(INPUT_IDS), PUSHED, PUSHED_SAVE, cwd=tmp_path, isolated=True,
               env=hub_env(hub, tmp_path / "hf"))
    result = json.loads(out.read_text())
    assert result["paperzoo_modules"] == []
    expected = lm_outputs(model)
    for repo in (PUSHED, PUSHED_SAVE):
        assert result[repo]["class"].startswith("transformers_modules.testuser."), repo
        torch.testing.assert_close(torch.tensor(result[repo]["logits"]), expected["logits"], atol=1e-5, rtol=0)
        assert result[repo]["greedy"] == expected["greedy"].tolist()
    assert hub.unhandled == []


def test_push_to_hub_in_offline_mode_is_one_clear_error(on_fake_hub, monkeypatch):
    monkeypatch.setattr(importlib.import_module("huggingface_hub.constants"), "HF_HUB_OFFLINE", True)
    before = len(on_fake_hub.requests)
    with pytest.raises(importlib.import_module("paperzoo.hub.push").PushError, match="offline mode"):
        tiny_retnet().push_to_hub("testuser/offline")
    assert len(on_fake_hub.requests) == before
    assert "testuser/offline" not in on_fake_hub.repos
