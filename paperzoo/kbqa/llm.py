"""The LLM every FlexKBQA stage calls lives in paperzoo.llm.generation (shared with the other LLM pipelines)."""

from ..llm.generation import CachedGenerator

__all__ = ["CachedGenerator"]
