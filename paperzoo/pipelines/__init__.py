"""transformers pipelines for paperzoo models (DESIGN §6), one task per module.

Each task is named in the table of `paperzoo._registration`, which registers it with
`transformers.pipelines.PIPELINE_REGISTRY` as soon as transformers.pipelines is imported (`import paperzoo` is enough).
`pt_model` must be an Auto class that transformers exports (notes/hf_conventions.md §3): an exported folder records
its name in config.json (`custom_pipelines`) and a process without paperzoo resolves it with
`getattr(transformers, name)`.
"""

from __future__ import annotations

from .._registration import register_pipelines
from .tabular_classification import TabularClassificationPipeline

__all__ = ["TabularClassificationPipeline", "register_pipelines"]
