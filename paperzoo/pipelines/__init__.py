"""transformers pipelines for paperzoo models (DESIGN §6), one task per module.

Importing this package registers every task below with `transformers.pipelines.PIPELINE_REGISTRY`
(`paperzoo/__init__.py` imports it, so `import paperzoo` is enough). `pt_model` must be an Auto class that transformers
exports (notes/hf_conventions.md §3): an exported folder records its name in config.json (`custom_pipelines`) and a
process without paperzoo resolves it with `getattr(transformers, name)`.
"""

from __future__ import annotations

from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY

from .tabular_classification import TASK as TABULAR_CLASSIFICATION
from .tabular_classification import TabularClassificationPipeline

# task -> (pipeline class, Auto class that loads its model)
TASKS = {
    TABULAR_CLASSIFICATION: (TabularClassificationPipeline, AutoModel),
}


def register_pipelines() -> None:
    """Register every paperzoo task; a second call (a re-import) changes nothing and logs nothing."""
    for task, (pipeline_class, auto_class) in TASKS.items():
        current = PIPELINE_REGISTRY.supported_tasks.get(task)
        if current is not None and current.get("impl") is pipeline_class:
            continue
        PIPELINE_REGISTRY.register_pipeline(task, pipeline_class=pipeline_class, pt_model=auto_class)


register_pipelines()

__all__ = ["TASKS", "TabularClassificationPipeline", "register_pipelines"]
