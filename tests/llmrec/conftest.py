"""A tiny random Llama (float64, no chat template) and a tiny SASRec over 30 titled items, for the llmrec tests."""

from __future__ import annotations

import pytest
import torch

from paperzoo import SASRecConfig, SASRecForSequentialRecommendation
from paperzoo.processors.seqrec import SequentialRecommendationProcessor

from ..tiny_llm import tiny_causal_lm

NUM_ITEMS = 30
# distinct words the tiny BPE tokenizer splits differently, with a few characters a title may hold
TITLES = {f"m{i}": f"{word} {i} ({1960 + i})" for i, word in zip(
    range(1, NUM_ITEMS + 1), ["Toy Story", "Heat", "Fargo", "Casablanca", "Vertigo", "Alien", "Psycho", "Rocky",
                              "Jaws", "Brazil", "Amélie", "Se7en", "Up", "Babe", "Ran", "Big", "Clue", "Dune",
                              "Fury", "Gigi", "Hook", "Kids", "Lolita", "Mulan", "Nell", "Rudy", "Selena", "Tron",
                              "Willow", "Zelig"])}


@pytest.fixture(scope="package")
def llm():
    model, tokenizer = tiny_causal_lm()
    return model.double(), tokenizer


@pytest.fixture(scope="package")
def sasrec():
    processor = SequentialRecommendationProcessor(item_keys=list(TITLES), max_length=6)
    torch.manual_seed(0)
    model = SASRecForSequentialRecommendation(SASRecConfig(num_items=NUM_ITEMS, max_length=6, hidden_size=16,
                                                           hidden_dropout_prob=0.0)).eval()
    return model, processor
