"""The `kbqa` pipeline: question(s) → {answer, labels, program, source}, FlexKBQA's inference (Stages 3 and 5).

    from paperzoo.kbqa import OxigraphBackend, load_kb
    kb = OxigraphBackend.from_kb(load_kb("umls"))
    qa = pipeline("kbqa", model="my-parser", backend=kb)             # a folder saved by `paperzoo kbqa train`
    qa("What can viruses cause?")
    # {'answer': ['https://.../entity/disease_or_syndrome', ...], 'labels': ['disease or syndrome', ...],
    #  'program': 'SELECT DISTINCT ?x WHERE { e:virus r:causes ?x . }', 'source': 'kb'}

The parser's beams (surface form) are executed in order; the first with a non-empty answer is the answer (source
"kb"). When none has one, the InherentReasoner given as `reasoner=` answers (source "llm", program None); without a
reasoner the answer is empty (source None). `num_beams` (default 4) may be given at construction or per call.
"""

from __future__ import annotations

from transformers import Pipeline

TASK = "kbqa"


class KBQAPipeline(Pipeline):
    _load_tokenizer = True
    _load_image_processor = False
    _load_video_processor = False
    _load_feature_extractor = False
    _load_processor = False

    def __init__(self, *args, backend=None, reasoner=None, **kwargs):
        from ..kbqa.backends import KBBackend
        from ..kbqa.programs import ProgramFormat

        if not isinstance(backend, KBBackend):
            raise ValueError(f"the {TASK} pipeline needs backend=... (a paperzoo.kbqa KBBackend: OxigraphBackend or "
                             f"SparqlEndpointBackend), got {type(backend).__name__}")
        self.backend, self.reasoner = backend, reasoner
        self.program_format = ProgramFormat(backend)
        super().__init__(*args, **kwargs)

    def _sanitize_parameters(self, num_beams: int | None = None, **kwargs):
        if kwargs:
            raise ValueError(f"unexpected argument(s) {sorted(kwargs)} for the {TASK} pipeline")
        forward = {}
        if num_beams is not None:
            if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams <= 0:
                raise ValueError(f"num_beams={num_beams!r} must be a positive integer")
            forward["num_beams"] = num_beams
        return {}, forward, {}

    def __call__(self, inputs, **kwargs):
        single = isinstance(inputs, str)
        questions = [inputs] if single else list(inputs)
        bad = [q for q in questions if not isinstance(q, str) or not q.strip()]
        if not questions or bad:
            got = bad[0] if bad else inputs
            raise ValueError(f"inputs must be a non-empty question or a list of them; got {got!r}")
        results = super().__call__(questions, **kwargs)
        return results[0] if single else results

    def preprocess(self, question: str):
        inputs = self.tokenizer(question, truncation=True, max_length=64, return_tensors="pt")
        return {**inputs, "question": question}

    def _forward(self, model_inputs, num_beams: int = 4):
        question = model_inputs.pop("question")
        out = self.model.generate(**model_inputs, num_beams=num_beams, num_return_sequences=num_beams,
                                  max_new_tokens=96, do_sample=False)
        return {"beams": self.tokenizer.batch_decode(out, skip_special_tokens=True), "question": question}

    def postprocess(self, model_outputs):
        from ..kbqa.parser import first_answer

        parse = first_answer(model_outputs["beams"], self.backend, self.program_format)
        if parse.program is not None:
            return self._result(parse.answers, parse.program, "kb")
        if self.reasoner is not None:
            return self._result(self.reasoner([model_outputs["question"]])[0], None, "llm")
        return self._result([], None, None)

    def _result(self, answers, program, source):
        return {"answer": answers, "labels": [self.backend.label(a) for a in answers], "program": program,
                "source": source}


__all__ = ["KBQAPipeline", "TASK"]
