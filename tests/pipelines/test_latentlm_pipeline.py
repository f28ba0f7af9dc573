"""LatentLMPipeline (a diffusers DiffusionPipeline): class or prompt → images equal to the model's own generate +
decode, PIL / numpy / latent outputs, save / load as a diffusers pipeline, and image → text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlamaConfig

import paperzoo

from ..processors.test_latentlm import processor


def tiny_model(num_classes=0, vocab_size=13, span=None):
    text = LlamaConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                       intermediate_size=48, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    span = span or {"boi_token_id": 10, "eoi_token_id": 11, "latent_token_id": 12}
    config = paperzoo.LatentLMConfig(text_config=text, vae_config=dict(hidden_size=16, num_blocks=1, image_size=4),
                                     head_config=dict(num_hidden_layers=1), num_classes=num_classes, **span)
    torch.manual_seed(0)
    model = paperzoo.LatentLMForConditionalGeneration(config).eval()
    with torch.no_grad():
        for p in model.diffusion_head.parameters():
            p.normal_(0, 0.2)
    return model


def test_class_to_image_equals_generate_and_decode(tmp_path):
    model = tiny_model(num_classes=3)
    pipe = paperzoo.LatentLMPipeline(model=model)
    out = pipe(class_labels=[0, 2], num_inference_steps=4, guidance_scale=2.0,
               generator=torch.Generator().manual_seed(0), output_type="np")
    assert out.images.shape == (2, 4, 4, 1) and out.images.dtype == np.uint8
    with torch.no_grad():
        gen = model.generate(torch.full((2, 1), 10), class_labels=torch.tensor([0, 2]), max_new_tokens=5,
                             do_sample=False, num_inference_steps=4, guidance_scale=2.0, return_dict_in_generate=True,
                             latent_generator=torch.Generator().manual_seed(0), pad_token_id=0)
        pixels = model.decode_latents(torch.stack(gen.latents))
    want = ((pixels * 0.5 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.testing.assert_array_equal(out.images, want)
    pil = pipe(class_labels=1, num_inference_steps=2, num_images_per_prompt=3).images
    assert len(pil) == 3 and pil[0].size == (4, 4)
    latents = pipe(class_labels=[1], num_inference_steps=2, output_type="latent").images
    assert latents.shape == (1, 4, 4)
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = paperzoo.LatentLMPipeline.from_pretrained(tmp_path / "pipe")
    assert type(loaded.model) is paperzoo.LatentLMForConditionalGeneration
    again = loaded(class_labels=[0, 2], num_inference_steps=4, guidance_scale=2.0,
                   generator=torch.Generator().manual_seed(0), output_type="np")
    np.testing.assert_array_equal(again.images, out.images)


def test_prompt_to_image_and_image_to_text():
    proc = processor()
    model = tiny_model(vocab_size=len(proc.tokenizer), span=proc.span_token_ids)
    pipe = paperzoo.LatentLMPipeline(model=model, processor=proc)
    images = pipe(prompt=["draw a three", "draw a"], num_inference_steps=3, output_type="pt").images
    assert images.shape == (2, 1, 4, 4) and (images >= 0).all() and (images <= 1).all()
    texts = pipe.describe([np.zeros((4, 4), np.uint8), np.full((4, 4), 255, np.uint8)], prompt=" this is",
                          max_new_tokens=3)
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)


def test_bad_arguments_are_value_errors():
    pipe = paperzoo.LatentLMPipeline(model=tiny_model(num_classes=3))
    with pytest.raises(ValueError, match="guidance_scale=-2"):
        pipe(class_labels=[0], guidance_scale=-2.0)
    with pytest.raises(ValueError, match="exactly one of prompt"):
        pipe()
    with pytest.raises(ValueError, match="processor"):
        pipe(prompt="draw a three")
    with pytest.raises(ValueError, match="output_type='jpeg'"):
        pipe(class_labels=[0], output_type="jpeg")
