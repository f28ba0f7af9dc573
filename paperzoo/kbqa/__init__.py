"""FlexKBQA (arXiv 2308.12060): few-shot knowledge-base QA with an LLM as program translator, as stages a user points
at their own knowledge base (DESIGN §2: a multi-stage system gets one package, its stages as classes).

- backends: `OxigraphBackend` (embedded pyoxigraph, the default) and `SparqlEndpointBackend` (any SPARQL 1.1
  endpoint), one interface; queries run read-only with time and row limits.
- kb: pykeen's UMLS and Nations (or a user's TSV) as RDF with labels.
- Stage 1 `ProgramSampler`, Stage 2 `ProgramTranslator`, Stage 3 `SemanticParser`, Stage 4
  `ExecutionGuidedSelfTraining`, Stage 5 `InherentReasoner`; `FlexKBQA` wires them; `pipeline("kbqa")` answers.

Names are imported lazily, so `import paperzoo.kbqa` loads neither torch nor transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "KBBackend": "backends", "OxigraphBackend": "backends", "QueryError": "backends", "QueryTimeout": "backends",
    "Result": "backends", "RowLimitExceeded": "backends", "check_read_only": "backends",
    "SparqlEndpointBackend": "endpoint",
    "KnowledgeBase": "kb", "kb_from_tsv": "kb", "load_kb": "kb", "read_triples": "kb",
    "ProgramFormat": "programs",
    "ProgramSampler": "sampler", "STRUCTURAL_TEMPLATES": "sampler",
    "CachedGenerator": "llm",
    "AnswerReader": "llm_stages", "InContextParser": "llm_stages", "InherentReasoner": "llm_stages",
    "ProgramTranslator": "llm_stages",
    "Parse": "parser", "SemanticParser": "parser",
    "AgreementFilter": "self_training", "ErrorFilter": "self_training", "ExecutionGuidedSelfTraining": "self_training",
    "SemanticFilter": "self_training", "SentenceEncoder": "self_training",
    "FlexKBQA": "system", "FlexKBQAConfig": "system", "open_backend": "system", "read_pairs": "system",
    "read_questions": "system",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'paperzoo.kbqa' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)


def seeds_path(kb: str):
    """The packaged few-shot seed file of pykeen's KB `kb` (umls or nations)."""
    from pathlib import Path

    path = Path(__file__).with_name("seeds") / f"{kb}.jsonl"
    if not path.is_file():
        raise ValueError(f"no packaged seeds for kb={kb!r}; packaged: umls, nations")
    return path
