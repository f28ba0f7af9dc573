"""transformers' Auto classes and pipeline registry know every paperzoo architecture whichever of paperzoo, transformers
and peft is imported first (paperzoo/_registration.py). Each import order runs in a fresh interpreter, since the
hooks act at the first import of each transformers module."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Run after the import order under test. Every registration is checked through what a user calls.
CHECK = """
import json, sys, tempfile
import paperzoo
from transformers import (AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForCausalLM,
                          AutoModelForSequenceClassification, pipeline)
from transformers.pipelines import PIPELINE_REGISTRY
from paperzoo.configuration.retnet import RetNetConfig
from paperzoo.configuration.rrl import RRLConfig
from paperzoo.modeling.retnet import RetNetForCausalLM, RetNetForSequenceClassification, RetNetModel
from paperzoo.modeling.rrl import RRLForTabularClassification
from paperzoo.pipelines.tabular_classification import TabularClassificationPipeline
from paperzoo.processors.rrl import RRLProcessor

retnet = AutoConfig.for_model("paperzoo_retnet", vocab_size=32, hidden_size=16, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=32)
assert type(retnet) is RetNetConfig, type(retnet)
assert type(AutoModelForCausalLM.from_config(retnet)) is RetNetForCausalLM
assert type(AutoModel.from_config(retnet)) is RetNetModel
assert type(AutoModelForSequenceClassification.from_config(retnet)) is RetNetForSequenceClassification
rrl = AutoConfig.for_model("paperzoo_rrl", num_discrete_features=2, num_continuous_features=1, layer_widths=[4])
assert type(rrl) is RRLConfig, type(rrl)
model = AutoModel.from_config(rrl)
assert type(model) is RRLForTabularClassification, type(model)
with tempfile.TemporaryDirectory() as folder:
    processor = RRLProcessor().fit([{"a": "x", "b": 1.0}, {"a": "y", "b": 2.0}])
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    assert type(AutoFeatureExtractor.from_pretrained(folder)) is RRLProcessor
    assert type(pipeline("tabular-classification", model=folder, device="cpu")) is TabularClassificationPipeline
assert "tabular-classification" in PIPELINE_REGISTRY.get_supported_tasks()
if "peft" in sys.modules:  # the orders that import peft (tests/modeling/test_peft.py checks what the defaults do)
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as LORA
    assert LORA["paperzoo_retnet"] == LORA["llama"], LORA.get("paperzoo_retnet")
# the hooks leave no trace on transformers' modules: each keeps the loader it was found with
hooked = [m.__name__ for m in list(sys.modules.values())
          if type(getattr(m, "__loader__", None)).__module__.startswith("paperzoo")]
assert hooked == [], hooked
print("registered")
"""

IMPORT_ORDERS = {
    # paperzoo, then each registry at its first use
    "paperzoo first": "import paperzoo",
    # every registry already imported when paperzoo registers at once
    "transformers and peft first": "import peft, transformers.pipelines\nfrom transformers import AutoFeatureExtractor",
    # transformers.modeling_utils imports configuration_auto while it is still executing
    "PreTrainedModel first": "import paperzoo\nfrom transformers import PreTrainedModel",
    # peft imports modeling_auto before transformers.modeling_utils
    "peft after paperzoo": "import paperzoo, peft",
    # the pipeline module imports transformers.pipelines, which completes while that module is still executing
    "pipeline module first": "from paperzoo.pipelines import TabularClassificationPipeline",
}


@pytest.mark.parametrize("prelude", IMPORT_ORDERS.values(), ids=IMPORT_ORDERS.keys())
def test_registered_in_any_import_order(prelude):
    result = subprocess.run([sys.executable, "-c", f"{prelude}\n{CHECK}"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "registered"
