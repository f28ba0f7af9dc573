"""Training E4SRec (paperzoo.modeling.e4srec) as E4SRec does: LoRA on the LLM, the item-side layers trained in full,
transformers' `Trainer` on truncated histories, the sequential recommenders' full-ranking evaluation.

    model = E4SRecForSequentialRecommendation.from_llm(None, item_embeddings=sasrec.item_embeddings, loss_type="ce")
    model = get_peft_model(model, lora_config())          # adapters + item table + projections are what trains
    window = SequentialRecommendationProcessor(processor.item_keys, max_length=model.config.max_length)
    trainer = Trainer(model, args=ranking_training_arguments(...),
                      train_dataset=Dataset.from_list(last_window_rows(window, valid.histories)),
                      eval_dataset=Dataset.from_list(evaluation_rows(window, valid)),
                      compute_metrics=RankingMetrics(valid))

The LoRA recipe (E4SRec: LoRA r = 8 on the attention projections; its ID embeddings, input projection and output layer
train in full): adapters on the LLM's `q_proj` and `v_proj` (the Llama names; PEFT's Llama default, registered for
this model type), `modules_to_save` = the item table and both projections, so that PEFT trains and saves them with
the adapters. A user's last `max_length` + 1 training items make one window in which every position is a target
(the LLM's cost grows with the window, so only the most recent items are read, as at inference).
"""

from __future__ import annotations

LORA_TARGET_MODULES = ("q_proj", "v_proj")
TRAINED_IN_FULL = ("item_embeddings", "input_proj", "output_proj")


def lora_config(r: int = 8, lora_alpha: int = 16, lora_dropout: float = 0.05,
                target_modules=LORA_TARGET_MODULES, **kwargs):
    """PEFT LoraConfig of the recipe above (other arguments go to LoraConfig)."""
    from peft import LoraConfig

    return LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout, target_modules=list(target_modules),
                      modules_to_save=list(TRAINED_IN_FULL), **kwargs)


def last_window_rows(processor, sequences) -> list[dict]:
    """One training window per sequence of item ids (longer than one item): its last `processor.max_length` + 1
    items, input = items[:-1], labels = items[1:] (every position a target), left-padded."""
    return [processor.train_rows(sequence)[0] for sequence in sequences if len(sequence) > 1]


__all__ = ["LORA_TARGET_MODULES", "TRAINED_IN_FULL", "last_window_rows", "lora_config"]
