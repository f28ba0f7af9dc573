"""paperzoo.hub.push and `paperzoo push`: upload an export to a loopback Hub, then load it by repo id in a fresh
process where paperzoo cannot be imported, and get the original model's logits and generations.

HF_ENDPOINT is read once, when huggingface_hub.constants is first imported (this process imported it long ago), so
the uploads and the download run in fresh processes with the environment set from the start; the fake Hub runs here.
"""

from __future__ import annotations

import importlib
import json

import pytest
import torch

import paperzoo

from .fakehub import FakeHub, run_python
from .test_export import INPUT_IDS, snapshot, tiny_retnet

push_module = importlib.import_module("paperzoo.hub.push")
REPO, CLI_REPO = "testuser/tiny-retnet", "testuser/tiny-retnet-cli"

UPLOAD = r'''
import contextlib, io, json, sys
from paperzoo.hub.push import push
from paperzoo.cli import main

folder, out_path = sys.argv[1], sys.argv[2]
first = push(folder, "testuser/tiny-retnet")
again = push(folder, "testuser/tiny-retnet", commit_message="second upload")  # the repo exists: exist_ok
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    rc = main(["push", folder, "testuser/tiny-retnet-cli"])
json.dump({"first": [str(first), first.oid, first.commit_url, str(first.repo_url)],
           "again": [str(again), again.oid], "cli_rc": rc, "cli_stdout": printed.getvalue()}, open(out_path, "w"))
'''

DOWNLOAD = r'''
import json, sys
import torch
from transformers import AutoConfig, AutoModelForCausalLM

out_path, ids = sys.argv[1], torch.tensor(json.loads(sys.argv[2]))
config = AutoConfig.from_pretrained("testuser/tiny-retnet", trust_remote_code=True)
model = AutoModelForCausalLM.from_pretrained("testuser/tiny-retnet", trust_remote_code=True).eval()
with torch.no_grad():
    logits = model(ids).logits
    greedy = model.generate(ids[:1], max_new_tokens=10, do_sample=False)
json.dump({"module": type(model).__module__, "config_class": type(config).__name__, "logits": logits.tolist(),
           "greedy": greedy.tolist(),
           "paperzoo_modules": sorted(m for m in sys.modules if m == "paperzoo" or m.startswith("paperzoo."))},
          open(out_path, "w"))
'''


@pytest.fixture(scope="module")
def hub():
    with FakeHub() as server:
        yield server


def hub_env(hub: FakeHub, home) -> dict[str, str]:
    return {"HF_ENDPOINT": hub.endpoint, "HF_TOKEN": "dummy", "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(home),
            "HF_MODULES_CACHE": str(home / "modules")}


@pytest.fixture(scope="module")
def uploaded(hub, tmp_path_factory):
    model = tiny_retnet(seed=1)
    work = tmp_path_factory.mktemp("push")
    folder = work / "tiny-retnet"
    paperzoo.hub.export(model, folder, repo_id=REPO)
    out = work / "upload.json"
    run_python(UPLOAD, str(folder), str(out), env=hub_env(hub, work / "hf-upload"), cwd=work, isolated=False)
    return model, folder, json.loads(out.read_text())


@pytest.fixture(scope="module")
def downloaded(hub, uploaded, tmp_path_factory):
    work = tmp_path_factory.mktemp("pull")
    out = work / "download.json"
    run_python(DOWNLOAD, str(out), json.dumps(INPUT_IDS), env=hub_env(hub, work / "hf-download"), cwd=work,
               isolated=True)
    return json.loads(out.read_text())


def test_push_uploads_the_folder(hub, uploaded):
    _, folder, result = uploaded
    url, oid, commit_url, repo_url = result["first"]
    assert url == commit_url == f"{hub.endpoint}/{REPO}/commit/{oid}"
    assert repo_url == f"{hub.endpoint}/{REPO}"
    sha, files = hub.repos[REPO].commits[1]  # [0] is the empty repo
    assert sha == oid
    assert files == snapshot(folder)
    assert "model.safetensors" in files and "modeling_retnet.py" in files and "README.md" in files
    # upload_folder had the README's YAML validated: the card's metadata reached the Hub
    assert any("arxiv:2307.08621" in meta.get("tags", []) and meta.get("library_name") == "transformers"
               for meta in hub.validated_yaml)


def test_push_to_an_existing_repo_makes_a_new_commit(hub, uploaded):
    _, folder, result = uploaded
    again_url, again_oid = result["again"]
    assert again_oid != result["first"][1] and again_oid == hub.repos[REPO].commits[2][0]
    assert hub.files(REPO) == snapshot(folder)


def test_cli_push(hub, uploaded):
    _, folder, result = uploaded
    assert result["cli_rc"] == 0
    head = hub.repos[CLI_REPO].head[0]
    assert result["cli_stdout"] == f"pushed {folder} -> {hub.endpoint}/{CLI_REPO}/commit/{head}\n"
    assert hub.files(CLI_REPO) == snapshot(folder)


def test_round_trip_without_paperzoo(hub, uploaded, downloaded):
    model, _, _ = uploaded
    assert downloaded["paperzoo_modules"] == []
    head = hub.repos[REPO].head[0]
    assert downloaded["module"] == f"transformers_modules.testuser.tiny_hyphen_retnet.{head}.modeling_retnet"
    assert downloaded["config_class"] == "RetNetConfig"
    ids = torch.tensor(INPUT_IDS)
    with torch.no_grad():
        logits = model(ids).logits
        greedy = model.generate(ids[:1], max_new_tokens=10, do_sample=False)
    torch.testing.assert_close(torch.tensor(downloaded["logits"]), logits, atol=1e-5, rtol=0)
    assert downloaded["greedy"] == greedy.tolist()
    assert hub.unhandled == []  # every request the clients made has a route in the fake Hub


def test_push_refuses_what_is_not_an_export(tmp_path):
    with pytest.raises(FileNotFoundError):
        push_module.push(tmp_path / "missing", REPO)
    with pytest.raises(ValueError, match="config.json"):
        push_module.push(tmp_path, REPO)
