"""paperzoo: research architectures as first-class Hugging Face models.

Importing paperzoo registers every architecture with transformers' Auto classes and every pipeline task, here and
nowhere else.
"""

from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from .configuration.retnet import RetNetConfig
from .modeling.retnet import RetNetForCausalLM, RetNetForSequenceClassification, RetNetModel
from . import hub  # noqa: E402  (paperzoo.hub.export, paperzoo.hub.push)

__version__ = "0.1.0"

# exist_ok: a second import of paperzoo (e.g. after a reload) must not fail; model types are prefixed, so this never
# replaces another library's class.
AutoConfig.register(RetNetConfig.model_type, RetNetConfig, exist_ok=True)
AutoModel.register(RetNetConfig, RetNetModel, exist_ok=True)
AutoModelForCausalLM.register(RetNetConfig, RetNetForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(RetNetConfig, RetNetForSequenceClassification, exist_ok=True)

__all__ = [
    "RetNetConfig",
    "RetNetForCausalLM",
    "RetNetForSequenceClassification",
    "RetNetModel",
    "__version__",
]
