"""Training the sequential recommenders with transformers' `Trainer`, as the CE/SCE papers do (freerec launcher):
full-ranking validation every few epochs, model selection by validation NDCG@10, test with the selected model.

    train_rows, valid, test = processor.split(load_interactions("ml-100k"))
    trainer = Trainer(model, args=ranking_training_arguments(...), train_dataset=Dataset.from_list(train_rows),
                      eval_dataset=evaluation_rows(processor, valid), compute_metrics=RankingMetrics(valid))

Evaluation rows carry the history's last `max_length` items and the target as the label of the last position, so
Trainer's evaluation loss is the next-item loss and its predictions are the last position's scores over all items;
`RankingMetrics` removes each user's whole history (not only the window) from the ranking and counts ties
pessimistically (paperzoo.metrics.ranking).
"""

from __future__ import annotations

import torch

from ..metrics.ranking import DEFAULT_KS, ranking_metrics
from ..processors.seqrec import EvaluationRows


def evaluation_rows(processor, rows: EvaluationRows) -> list[dict]:
    """{"input_ids": the last max_length items (left-padded), "labels": -100 … −100, target} per user."""
    batch = processor(rows.histories, return_tensors=None)
    labels = [[-100] * (processor.max_length - 1) + [t] for t in rows.targets]
    return [{"input_ids": ids, "labels": lab} for ids, lab in zip(batch["input_ids"], labels)]


class RankingMetrics:
    """`compute_metrics` for Trainer: full-ranking HR@k / NDCG@k / MRR@k of the evaluation rows, in their order."""

    def __init__(self, rows: EvaluationRows, ks=DEFAULT_KS):
        self.rows, self.ks = rows, tuple(ks)

    def __call__(self, eval_prediction) -> dict[str, float]:
        scores = eval_prediction.predictions
        scores = torch.as_tensor(scores[0] if isinstance(scores, (tuple, list)) else scores)  # the logits
        if scores.shape[0] != len(self.rows.targets):
            raise ValueError(f"{scores.shape[0]} predictions for {len(self.rows.targets)} evaluation rows: evaluate "
                             f"the rows RankingMetrics was built with, in order")
        targets = torch.as_tensor(self.rows.targets)
        return ranking_metrics(scores.float(), targets, seen=self.rows.histories, ks=self.ks)


def ranking_training_arguments(output_dir: str, epochs: int, steps_per_epoch: int, eval_every_epochs: int = 5,
                               **kwargs):
    """TrainingArguments for the papers' protocol: evaluation (and a checkpoint) every `eval_every_epochs` epochs,
    the model with the best validation NDCG@10 loaded at the end. Other arguments go to TrainingArguments."""
    from transformers import TrainingArguments

    every = max(eval_every_epochs * steps_per_epoch, 1)
    return TrainingArguments(output_dir=output_dir, num_train_epochs=epochs, eval_strategy="steps", eval_steps=every,
                             save_strategy="steps", save_steps=every, save_total_limit=2, load_best_model_at_end=True,
                             metric_for_best_model="ndcg@10", greater_is_better=True, report_to=kwargs.pop(
                                 "report_to", []), **kwargs)


__all__ = ["RankingMetrics", "evaluation_rows", "ranking_training_arguments"]
