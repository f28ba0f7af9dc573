"""paperzoo: research architectures as first-class Hugging Face models.

Importing paperzoo registers every architecture with transformers' Auto classes and every pipeline task, here and
nowhere else.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
)

from . import hub  # paperzoo.hub.export, paperzoo.hub.push
from .configuration.retnet import RetNetConfig
from .configuration.rrl import RRLConfig
from .estimators.rrl import RRLClassifier
from .modeling.retnet import RetNetForCausalLM, RetNetForSequenceClassification, RetNetModel
from .modeling.rrl import RRLForTabularClassification
from .pipelines import TabularClassificationPipeline  # registers the "tabular-classification" pipeline task
from .processors.rrl import RRLProcessor

__version__ = "0.1.0"

# exist_ok: a second import of paperzoo (e.g. after a reload) must not fail; model types are prefixed, so this never
# replaces another library's class.
AutoConfig.register(RetNetConfig.model_type, RetNetConfig, exist_ok=True)
AutoModel.register(RetNetConfig, RetNetModel, exist_ok=True)
AutoModelForCausalLM.register(RetNetConfig, RetNetForCausalLM, exist_ok=True)
AutoModelForSequenceClassification.register(RetNetConfig, RetNetForSequenceClassification, exist_ok=True)
# RRL has no backbone/head split: AutoModel (which tabular pipelines load) returns the classifier itself
AutoConfig.register(RRLConfig.model_type, RRLConfig, exist_ok=True)
AutoModel.register(RRLConfig, RRLForTabularClassification, exist_ok=True)
AutoFeatureExtractor.register(RRLConfig, RRLProcessor, exist_ok=True)

__all__ = [
    "RRLClassifier",
    "RRLConfig",
    "RRLForTabularClassification",
    "RRLProcessor",
    "RetNetConfig",
    "RetNetForCausalLM",
    "RetNetForSequenceClassification",
    "RetNetModel",
    "__version__",
]
