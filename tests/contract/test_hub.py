"""The Hub contract: every class of every architecture, written by `paperzoo.hub.export` or by the plain
`model.save_pretrained` users call, loads through its Auto class with `trust_remote_code=True` in a fresh process
where paperzoo cannot be imported, and computes what the in-process model computes (float64, the same inputs), and
causal LMs generate the same tokens."""

from __future__ import annotations

import json

import pytest
import torch

import paperzoo

from ..hub.fakehub import run_python
from .architectures import architectures
from .test_model import main_output

CHILD = r'''
import json, sys
import torch
import transformers

spec = json.load(open(sys.argv[1]))
results = {}
for name, entry in spec.items():
    auto = getattr(transformers, entry["auto"])
    model = auto.from_pretrained(entry["folder"], trust_remote_code=True, dtype=torch.float64).eval()
    inputs = {k: torch.tensor(v) for k, v in entry["inputs"].items()}
    with torch.no_grad():
        out = model(**inputs)
        main = next(out[k] for k in ("logits", "last_hidden_state", "sample", "predictions") if k in out)
        result = {"class": type(model).__name__, "output": main.tolist()}
        if entry["generate"]:
            result["generated"] = model.generate(torch.tensor(entry["prompt"]), max_new_tokens=5, do_sample=False,
                                                 eos_token_id=None, pad_token_id=0).tolist()
    results[name] = result
json.dump({"results": results, "paperzoo": sorted(m for m in sys.modules if m.split(".")[0] == "paperzoo")},
          open(sys.argv[2], "w"))
'''


def write(arch, model, folder, route: str) -> None:
    if route == "export":
        paperzoo.hub.export(model, folder, processor=arch.processor(model.config) if arch.processor else None)
    else:
        model.save_pretrained(folder)


@pytest.mark.parametrize("route", ["export", "save_pretrained"])
@pytest.mark.parametrize("arch", architectures())
def test_every_class_loads_without_paperzoo_and_computes_the_same(arch, route, tmp_path):
    spec, want = {}, {}
    for mc in arch.classes:
        model = arch.model(mc)
        inputs = arch.inputs(model.config, 2, 11)
        folder = tmp_path / mc.cls.__name__
        generates = mc.task == "causal_lm"
        write(arch, model, folder, route)
        prompt = arch.token_ids(model.config, 2, 11) if generates else torch.zeros(0)
        spec[mc.cls.__name__] = {"auto": mc.auto, "folder": str(folder), "generate": generates,
                                 "inputs": {k: v.tolist() for k, v in inputs.items()}, "prompt": prompt.tolist()}
        with torch.no_grad():
            want[mc.cls.__name__] = {"output": main_output(model(**inputs))}
            if generates:
                want[mc.cls.__name__]["generated"] = model.generate(
                    prompt, max_new_tokens=5, do_sample=False, eos_token_id=None, pad_token_id=0)
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    out_path = tmp_path / "out.json"
    run_python(CHILD, str(tmp_path / "spec.json"), str(out_path), cwd=tmp_path, isolated=True,
               env={"HF_HOME": str(tmp_path / "hf"), "HF_MODULES_CACHE": str(tmp_path / "modules"),
                    "HF_HUB_OFFLINE": "1"})
    child = json.loads(out_path.read_text())
    assert child["paperzoo"] == []
    for name, expected in want.items():
        got = child["results"][name]
        assert got["class"] == name
        torch.testing.assert_close(torch.tensor(got["output"], dtype=torch.float64), expected["output"], rtol=0,
                                   atol=arch.atol)
        if "generated" in expected:
            assert got["generated"] == expected["generated"].tolist()
