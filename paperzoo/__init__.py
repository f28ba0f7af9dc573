"""paperzoo: research architectures as first-class Hugging Face models.

`import paperzoo` imports neither torch nor transformers, yet registers every architecture with transformers' Auto
classes, its pipeline tasks and PEFT's default target modules, whether transformers / peft are imported before or after
it: `paperzoo._registration` holds the one table and hooks each registry (see there). The classes and subpackages below
are imported on first access (PEP 562): `paperzoo.RetNetForCausalLM`, `paperzoo.hub.export`, ...
"""

import importlib

from . import _registration

__version__ = "0.1.0"

# public name -> dotted path of the class: every class of the registration table, and the estimators
_CLASSES = {path.rpartition(".")[2]: path
            for path in (*_registration.class_paths(), "paperzoo.estimators.rrl.RRLClassifier",
                         "paperzoo.pipelines.latentlm.LatentLMPipeline")}
_SUBPACKAGES = frozenset({"configuration", "convert", "diagnosis", "estimators", "hub", "kbqa", "kernels", "llm",
                          "llmrec", "losses", "metrics", "modeling", "pipelines", "processors"})

_registration.install()


def __getattr__(name: str):
    if name in _CLASSES:
        module, _, attr = _CLASSES[name].rpartition(".")
        value = getattr(importlib.import_module(module), attr)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # the next access is a plain attribute lookup
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_CLASSES, *_SUBPACKAGES})


__all__ = sorted([*_CLASSES, "__version__"])
