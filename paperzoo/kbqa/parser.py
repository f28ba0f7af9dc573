"""Stage 3, the lightweight semantic parser: a seq2seq model from question to program (surface form), trained with
`Seq2SeqTrainer`, read with beam search; the first beam that executes to a non-empty answer wins.

The paper uses RnG-KBQA (BERT ranker + T5-base generator) for Freebase and BART for KQA Pro, and says the framework is
model-agnostic. Here any `AutoModelForSeq2SeqLM` works (`SemanticParser(model, tokenizer)`, e.g. a pretrained T5 or
BART); `SemanticParser.build` makes a T5 sized for a CPU (about 6M parameters by default) with a byte-level BPE
tokenizer trained on the texts it is given (synthetic questions, programs, KB labels: never test questions).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .backends import KBBackend, QueryError
from .programs import ProgramFormat


@dataclass
class Parse:
    """The parser's reading of one question: the program that answered (compact), its answers, whether any beam
    executed, and every beam (surface form) in score order."""

    program: str | None
    answers: list[str] = field(default_factory=list)
    executable: bool = False
    beams: list[str] = field(default_factory=list)


class SemanticParser:
    """A seq2seq question → program model with its tokenizer."""

    def __init__(self, model, tokenizer, max_source_length: int = 64, max_target_length: int = 96):
        self.model, self.tokenizer = model, tokenizer
        self.max_source_length, self.max_target_length = max_source_length, max_target_length

    @classmethod
    def build(cls, texts: list[str], vocab_size: int = 2000, d_model: int = 256, layers: int = 3, heads: int = 4,
              seed: int = 0, **kwargs) -> SemanticParser:
        """A randomly initialised T5 (relu FFN 4·d_model, `layers` encoder and decoder layers) and a byte-level BPE
        tokenizer of `vocab_size` trained on `texts`."""
        import torch
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
        from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

        if not texts:
            raise ValueError("texts is empty: the tokenizer needs the questions and programs it will read")
        bpe = Tokenizer(models.BPE(unk_token="<unk>"))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        bpe.train_from_iterator(texts, trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=["<pad>", "</s>", "<unk>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
        bpe.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[
            ("</s>", bpe.token_to_id("</s>"))])  # T5 reads and writes sequences ended by EOS
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<pad>", eos_token="</s>",
                                            unk_token="<unk>")
        config = T5Config(vocab_size=len(tokenizer), d_model=d_model, d_ff=4 * d_model, d_kv=d_model // heads,
                          num_layers=layers, num_decoder_layers=layers, num_heads=heads, feed_forward_proj="relu",
                          pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                          decoder_start_token_id=tokenizer.pad_token_id)
        torch.manual_seed(seed)
        return cls(T5ForConditionalGeneration(config), tokenizer, **kwargs)

    @classmethod
    def from_pretrained(cls, folder: str | Path, **kwargs) -> SemanticParser:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        return cls(AutoModelForSeq2SeqLM.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder),
                   **kwargs)

    def save_pretrained(self, folder: str | Path, extra_files: dict[str, str] | None = None) -> None:
        """Model and tokenizer (and `extra_files`, name → text), written to a temporary folder beside `folder` and
        renamed into place (a crash never leaves half a parser; an existing folder is replaced only once the new
        one is complete)."""
        from ..hub.export import _make_sibling, _replace  # the exporter's temporary-sibling-then-rename

        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = _make_sibling(folder, "tmp")
        try:
            self.model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)
            for name, text in (extra_files or {}).items():
                (tmp / name).write_text(text, encoding="utf-8")
            _replace(tmp, folder)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    # --- training --------------------------------------------------------------------------------------------------
    def fit(self, pairs: list[tuple[str, str]], epochs: float = 30, batch_size: int = 32,
            learning_rate: float = 1e-3, seed: int = 0, progress: bool = True, **training_args) -> SemanticParser:
        """Train on (question, surface program) pairs with Seq2SeqTrainer (AdamW, linear decay, 5% warm-up);
        further keyword arguments go to Seq2SeqTrainingArguments."""
        import torch
        from datasets import Dataset
        from transformers import DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments

        if not pairs:
            raise ValueError("no (question, program) pairs to train on")
        bad = [i for i, p in enumerate(pairs) if not (isinstance(p, (tuple, list)) and len(p) == 2
                                                       and all(isinstance(x, str) and x.strip() for x in p))]
        if bad:
            raise ValueError(f"pairs[{bad[0]}] = {pairs[bad[0]]!r} is not a (question, program) pair of strings")
        data = Dataset.from_dict({"question": [q for q, _ in pairs], "program": [p for _, p in pairs]})
        data = data.map(self._encode, batched=True, remove_columns=["question", "program"])
        with tempfile.TemporaryDirectory(prefix="kbqa-parser-") as tmp:
            args = Seq2SeqTrainingArguments(
                output_dir=tmp, num_train_epochs=epochs, per_device_train_batch_size=batch_size,
                learning_rate=learning_rate, warmup_steps=0.05, lr_scheduler_type="linear", weight_decay=0.01,
                save_strategy="no", report_to=[], logging_steps=50, seed=seed, disable_tqdm=not progress,
                dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(), **training_args)
            trainer = Seq2SeqTrainer(model=self.model, args=args, train_dataset=data,
                                     data_collator=DataCollatorForSeq2Seq(self.tokenizer, model=self.model))
            trainer.train()
            self.trained_steps = trainer.state.global_step
        self.model.eval()
        return self

    def _encode(self, batch):
        inputs = self.tokenizer(batch["question"], max_length=self.max_source_length, truncation=True)
        inputs["labels"] = self.tokenizer(text_target=batch["program"], max_length=self.max_target_length,
                                          truncation=True)["input_ids"]
        return inputs

    # --- reading ---------------------------------------------------------------------------------------------------
    def generate(self, questions: list[str], num_beams: int = 4, batch_size: int = 32) -> list[list[str]]:
        """The `num_beams` best surface programs per question, best first."""
        import torch

        if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams <= 0:
            raise ValueError(f"num_beams={num_beams!r} must be a positive integer")
        beams = []
        for start in range(0, len(questions), batch_size):
            chunk = questions[start : start + batch_size]
            inputs = self.tokenizer(chunk, max_length=self.max_source_length, truncation=True, padding=True,
                                    return_tensors="pt").to(self.model.device)
            with torch.no_grad():
                out = self.model.generate(**inputs, num_beams=num_beams, num_return_sequences=num_beams,
                                          max_new_tokens=self.max_target_length, do_sample=False, early_stopping=True)
            texts = self.tokenizer.batch_decode(out, skip_special_tokens=True)
            beams += [[t.strip() for t in texts[i * num_beams : (i + 1) * num_beams]] for i in range(len(chunk))]
        return beams

    def answer(self, questions: list[str], backend: KBBackend, program_format: ProgramFormat,
               num_beams: int = 4) -> list[Parse]:
        """The parse of each question from its beams (see `first_answer`)."""
        return [first_answer(beams, backend, program_format) for beams in self.generate(questions, num_beams)]


def first_answer(beams: list[str], backend: KBBackend, program_format: ProgramFormat) -> Parse:
    """Execute surface-form beams in order: the first with a non-empty answer (a count of 0 is empty) is the parse;
    when none has one, program is None (the pipeline then falls back to the LLM). The rule of both the parser and
    the `kbqa` pipeline."""
    parse = Parse(None, beams=list(beams))
    for beam in beams:
        try:
            program = program_format.from_surface(beam.strip())
            answers = backend.answers(program)
        except QueryError:
            continue
        parse.executable = True
        if answers and answers != ["0"]:
            parse.program, parse.answers = program, answers
            break
    return parse

__all__ = ["Parse", "SemanticParser", "first_answer"]
