"""The `clinical-diagnosis` pipeline: a patient record → the LLM's multiple-choice diagnosis, its probabilities and
the record features it cites (paperzoo.diagnosis.LLMDiagnoser; Wang et al., arXiv 2306.01499).

    from paperzoo.data import local_llm
    from paperzoo.diagnosis import DiagnosisTask, load_ad_data
    model, tokenizer = local_llm()                                   # or any causal LM id / folder
    frame = load_ad_data()
    diagnose = pipeline("clinical-diagnosis", model=model, tokenizer=tokenizer,
                        description=DiagnosisTask.builtin("ad_data"),  # or a JSON path, or a built-in name
                        examples=frame.iloc[:266], shots=4)            # training rows: examples, ranges, features
    diagnose(frame.iloc[300])                                        # a pandas row or dict -> one result
    diagnose(frame.iloc[300:310])                                    # a DataFrame or list of dicts -> a list

Each result: {"label", "probabilities", "option_scores", "cited_features", "explanation", "answer_text",
"shown_features", "prompt_format", "valid"} (see LLMDiagnoser.diagnose). Construction options: shots,
max_features, scoring ("likelihood" | "generate"), explain, missing ("error" | "impute" | "omit"), chat_template,
batch_size, seed. Without `examples` the prompts are zero-shot over every feature, without ranges.
"""

from __future__ import annotations

from transformers import Pipeline

TASK = "clinical-diagnosis"


class _Records:
    """Records that go through the pipeline as one batch (a list would otherwise run one by one)."""

    def __init__(self, rows, single: bool):
        self.rows, self.single = rows, single


class ClinicalDiagnosisPipeline(Pipeline):
    _load_tokenizer = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_processor = False

    def __init__(self, *args, description=None, examples=None, **kwargs):
        from ..diagnosis.llm import LLMDiagnoser
        from ..diagnosis.task import DiagnosisTask

        options = {k: kwargs.pop(k) for k in ("shots", "max_features", "scoring", "explain", "missing",
                                               "chat_template", "max_new_tokens", "seed", "templates")
                   if k in kwargs}
        llm_batch_size = kwargs.pop("llm_batch_size", 4)
        super().__init__(*args, **kwargs)
        if isinstance(description, str) and not description.endswith(".json"):
            description = DiagnosisTask.builtin(description)
        elif description is not None and not isinstance(description, DiagnosisTask):
            description = DiagnosisTask.load(description)
        if description is None:
            raise ValueError(f"the {TASK} pipeline needs description=... (a DiagnosisTask, a task JSON file or a "
                             "built-in name such as 'ad_data'): the classes and the features' descriptions and units")
        if self.tokenizer is None:
            raise ValueError(f"the {TASK} pipeline needs the LLM's tokenizer: pass tokenizer=...")
        self.diagnoser = LLMDiagnoser(description, self.model, self.tokenizer, batch_size=llm_batch_size,
                                      **options).fit(examples)

    def _sanitize_parameters(self, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)} for the {TASK} pipeline (options such as "
                             "shots= or scoring= are given when the pipeline is built)")
        return {}, {}, {}

    def __call__(self, inputs, **kwargs):
        """`inputs`: one record (a dict or a pandas row: one result), or a DataFrame / list of records (a list)."""
        from ..diagnosis.llm import records_of

        single = hasattr(inputs, "get") and not hasattr(inputs, "iterrows")
        return super().__call__(_Records(records_of(inputs), single), **kwargs)

    def preprocess(self, inputs: _Records):
        return {"records": inputs}

    def _forward(self, model_inputs):
        records = model_inputs["records"]
        return {"results": self.diagnoser.diagnose(records.rows), "single": records.single}

    def postprocess(self, model_outputs):
        results = model_outputs["results"]
        return results[0] if model_outputs["single"] else results


__all__ = ["ClinicalDiagnosisPipeline", "TASK"]
