"""LatentLMProcessor: `<image>` → `<boi>` + one placeholder per latent + `<eoi>`, labels and the shifted latent loss
mask, batches of different lengths, save / load through AutoProcessor."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import paperzoo


def word_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<bos>", "<eos>", "<unk>", "draw", "a", "this", "is", "three", "seven"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>")


def processor():
    from paperzoo.processors.sigma_vae import SigmaVAEImageProcessor

    return paperzoo.LatentLMProcessor(SigmaVAEImageProcessor(), word_tokenizer(), patch_size=2)


def test_images_become_spans_with_labels_and_the_shifted_mask():
    proc = processor()
    ids = proc.span_token_ids
    assert sorted(ids.values()) == [10, 11, 12]  # added to the vocabulary as special tokens
    images = [np.full((4, 4), 255, np.uint8), np.zeros((4, 4), np.uint8)]
    batch = proc(text=["draw a three <image>", "<image> this is a seven"], images=images, return_labels=True,
                 image_loss=True)
    boi, eoi, slot = ids["boi_token_id"], ids["eoi_token_id"], ids["latent_token_id"]
    row0 = batch["input_ids"][0].tolist()
    assert row0[:3] == [4, 5, 8] and row0[3:9] == [boi, slot, slot, slot, slot, eoi]
    assert batch["pixel_values"].shape == (2, 1, 4, 4)
    torch.testing.assert_close(batch["pixel_values"][0], torch.ones(1, 4, 4))  # 255 → 1 (rescale, normalise)
    torch.testing.assert_close(batch["pixel_values"][1], -torch.ones(1, 4, 4))
    mask, labels = batch["latent_loss_mask"], batch["labels"]
    assert (labels[batch["attention_mask"] == 0] == -100).all()
    # True exactly at the position before each placeholder (<boi> and latents 0..2)
    before = torch.zeros_like(mask)
    before[:, :-1] = batch["input_ids"][:, 1:] == slot
    assert torch.equal(mask, before) and mask.sum() == 8
    understanding = proc(text=["<image> this is a seven"], images=images[1:], return_labels=True, image_loss=False)
    assert not understanding["latent_loss_mask"].any()
    assert (understanding["labels"][understanding["input_ids"] == slot] == -100).all()


def test_a_model_takes_the_batch_and_the_processor_round_trips(tmp_path):
    from transformers import AutoProcessor, LlamaConfig

    proc = processor()
    batch = proc(text=["draw a three <image>", "<image> this is a seven"], images=[np.zeros((4, 4))] * 2,
                 return_labels=True)
    text = LlamaConfig(vocab_size=len(proc.tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=48, pad_token_id=0)
    config = paperzoo.LatentLMConfig(text_config=text, vae_config=dict(hidden_size=16, num_blocks=1, image_size=4),
                                     head_config=dict(num_hidden_layers=1), **proc.span_token_ids)
    model = paperzoo.LatentLMForConditionalGeneration(config)
    out = model(**batch)
    assert out.loss.isfinite() and out.diffusion_loss is not None and out.ce_loss is not None
    proc.save_pretrained(tmp_path)
    config.save_pretrained(tmp_path)
    loaded = AutoProcessor.from_pretrained(tmp_path)
    assert type(loaded) is paperzoo.LatentLMProcessor and loaded.span_token_ids == proc.span_token_ids
    again = loaded(text=["draw a three <image>", "<image> this is a seven"], images=[np.zeros((4, 4))] * 2,
                   return_labels=True)
    for key in batch:
        assert torch.equal(again[key], batch[key]), key


def test_bad_input_is_a_value_error():
    proc = processor()
    with pytest.raises(ValueError, match="2 images for 1"):
        proc(text="draw a three <image>", images=[np.zeros((4, 4))] * 2)
    with pytest.raises(ValueError, match="no images"):
        proc(text="draw a three <image>")
    with pytest.raises(ValueError, match="not divisible by patch_size=2"):
        proc(text="<image>", images=[np.zeros((5, 5))])
    with pytest.raises(ValueError, match="different shapes"):
        proc(text="<image> <image>", images=[np.zeros((4, 4)), np.zeros((6, 6))])
