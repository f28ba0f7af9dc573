"""LatentLM + σ-VAE on scikit-learn's digits, with paperzoo's classes and transformers' Trainer (CPU).

    .venv/bin/python benchmarks/latentlm.py --part main       # the recipe and its ablations (σ-VAE vs AE, v vs ε,
                                                                20 vs 250 steps, CFG scale), the digit grid PNG
    .venv/bin/python benchmarks/latentlm.py --part cfg        # recipe A at guidance scales 1 to 4
    .venv/bin/python benchmarks/latentlm.py --part text       # one model, text and images interleaved: "draw a three"
                                                                → image, image → "this is a three"
    .venv/bin/python benchmarks/latentlm.py --part speed      # sampling time per image against solver steps

Protocol (the LatentLM notes' CPU prototype, §7.2): 1,500 train / 297 test images (fixed permutation), pixels in
[-1, 1]. σ-VAE: 8×8 → 4×4 latents of 4 channels (patch 2), 600 steps of AdamW 2e-3, cosine, batch 128; latent
shift/scale measured on the training images after training (`LatentStatisticsCallback`). LatentLM: a Llama trunk of
width 96, 3 layers, 4 heads; head of 3 adaLN blocks; class-conditional (class on `<boi>`, null class, label dropout
0.1); 2 noise copies per latent, t uniform over 1000 cosine steps; AdamW 1e-3 (β 0.9/0.98, wd 0.01), 100 warm-up steps
then cosine, grad-clip 1, batch 64, 600 steps, EMA 0.999 with warm-up (inv_gamma 1, power 3/4). Sampling: raster
order, 16 latents, DPM-Solver++ (2M) 20 steps, fresh state per latent, CFG w = 2; 100 samples per class.
Metrics (paperzoo.data.digits.DigitsJudge, an MLP classifier trained on the real training images): conditional
accuracy, Fréchet distance in its hidden features (FD), mean nearest-training-image distance; reconstruction PSNR
of decode(μ) on the test images. Printed as markdown with the machine, command and date.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine_description  # noqa: E402

from paperzoo.configuration.latentlm import LatentLMConfig  # noqa: E402
from paperzoo.configuration.sigma_vae import SigmaVAEConfig  # noqa: E402
from paperzoo.data.digits import CLASS_NAMES, DigitsJudge, image_grid, load_digits_images, psnr  # noqa: E402
from paperzoo.modeling.latentlm import LatentLMForConditionalGeneration  # noqa: E402
from paperzoo.modeling.latentlm_training import EMACallback, LatentStatisticsCallback, class_conditional_example  # noqa: E402
from paperzoo.modeling.sigma_vae import SigmaVAEModel  # noqa: E402

SPAN = {"boi_token_id": 3, "eoi_token_id": 4, "latent_token_id": 5}  # class-conditional vocabulary: pad, bos, eos, span


def trainer_args(output_dir: str, steps: int, batch: int, lr: float, seed: int, warmup: int = 0, **kwargs):
    from transformers import TrainingArguments

    return TrainingArguments(output_dir=output_dir, max_steps=steps, per_device_train_batch_size=batch,
                             learning_rate=lr, lr_scheduler_type="cosine", warmup_steps=warmup, weight_decay=0.01,
                             adam_beta2=kwargs.pop("adam_beta2", 0.999), max_grad_norm=1.0, report_to=[],
                             save_strategy="no", logging_steps=max(steps // 4, 1), use_cpu=True, seed=seed,
                             data_seed=seed, disable_tqdm=True, dataloader_drop_last=True, **kwargs)


def train_vae(train, sigma_std: float, steps: int = 600, seed: int = 0) -> SigmaVAEModel:
    """A σ-VAE (sigma_std = 0: a plain autoencoder with the same L2 term) trained with Trainer."""
    from datasets import Dataset
    from transformers import Trainer

    torch.manual_seed(seed)
    vae = SigmaVAEModel(SigmaVAEConfig(in_channels=1, image_size=8, patch_size=2, latent_channels=4, hidden_size=64,
                                       num_blocks=2, sigma_std=sigma_std, mu_l2_weight=1e-2))
    data = Dataset.from_dict({"pixel_values": train.images}).with_format("torch")
    with tempfile.TemporaryDirectory() as out:
        Trainer(model=vae, args=trainer_args(out, steps, 128, 2e-3, seed), train_dataset=data,
                callbacks=[LatentStatisticsCallback(torch.from_numpy(train.images), seed=seed)]).train()
    return vae.eval()


def latentlm_config(vae: SigmaVAEModel, vocab_size: int, span: dict, num_classes: int, prediction_type: str):
    from transformers import LlamaConfig

    text = LlamaConfig(vocab_size=vocab_size, hidden_size=96, intermediate_size=256, num_hidden_layers=3,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, rms_norm_eps=1e-6,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    return LatentLMConfig(text_config=text, vae_config=vae.config.to_dict(), head_config={"num_hidden_layers": 3},
                          num_classes=num_classes, label_dropout=0.1, ddpm_batch_mul=2,
                          prediction_type=prediction_type, guidance_scale=2.0, **span)


def train_latentlm(config: LatentLMConfig, vae: SigmaVAEModel, rows: list[dict], steps: int = 600, seed: int = 0,
                   ema: bool = True) -> LatentLMForConditionalGeneration:
    """LatentLM trained with Trainer on `rows` (dicts of tensors), the σ-VAE's weights copied in (frozen)."""
    from datasets import Dataset
    from transformers import Trainer

    torch.manual_seed(seed)
    model = LatentLMForConditionalGeneration(config)
    model.vae.load_state_dict(vae.state_dict())
    data = Dataset.from_list([{k: v.tolist() for k, v in row.items()} for row in rows]).with_format("torch")
    callbacks = [EMACallback(model, decay=0.999)] if ema else []
    with tempfile.TemporaryDirectory() as out:
        Trainer(model=model, args=trainer_args(out, steps, 64, 1e-3, seed, warmup=100, adam_beta2=0.98),
                train_dataset=data, callbacks=callbacks).train()
    return model.eval()


def class_rows(config, train) -> list[dict]:
    return [class_conditional_example(config, torch.from_numpy(x), int(y)) for x, y in zip(train.images, train.labels)]


@torch.no_grad()
def sample_classes(model, per_class: int, steps: int = 20, guidance: float = 2.0, seed: int = 0, **kwargs):
    """(images [10·per_class, 1, 8, 8] in [-1, 1], labels, seconds)."""
    labels = torch.arange(10).repeat_interleave(per_class)
    ids = torch.full((len(labels), 1), model.config.boi_token_id)
    n = model.config.vae_config.latents_per_image
    start = time.perf_counter()
    out = model.generate(ids, class_labels=labels, max_new_tokens=n + 1, do_sample=False, num_inference_steps=steps,
                         guidance_scale=guidance, latent_generator=torch.Generator().manual_seed(seed),
                         return_dict_in_generate=True, pad_token_id=0, **kwargs)
    images = model.decode_latents(torch.stack([row[-n:] for row in out.latents])).clamp(-1, 1)
    return images.numpy(), labels.numpy(), time.perf_counter() - start


def judge_images(judge: DigitsJudge, images, labels) -> dict:
    return {"accuracy": judge.accuracy(images, labels), "fd": judge.frechet_distance(images),
            "nn": judge.nearest_neighbour_distance(images)}


@torch.no_grad()
def reconstruction_psnr(vae: SigmaVAEModel, test) -> float:
    x = torch.from_numpy(test.images)
    return psnr(vae.decode(vae.encode(x).mode()).sample.clamp(-1, 1).numpy(), test.images)


def references(judge: DigitsJudge, train, test) -> dict:
    means = np.stack([train.images[train.labels == c].mean(0) for c in range(10)])
    mean_fd = judge.frechet_distance(np.repeat(means, 100, 0))
    return {"test": judge_images(judge, test.images, test.labels), "class_means_fd": mean_fd}


def recipe(train, sigma_std: float, prediction_type: str, vae_steps: int = 600, lm_steps: int = 600, seed: int = 0,
           vae: SigmaVAEModel | None = None):
    """(σ-VAE, LatentLM, seconds of each training) for one run of the class-conditional recipe."""
    t0 = time.perf_counter()
    vae = vae or train_vae(train, sigma_std, vae_steps, seed)
    t1 = time.perf_counter()
    config = latentlm_config(vae, 6, SPAN, 10, prediction_type)
    model = train_latentlm(config, vae, class_rows(config, train), lm_steps, seed)
    return vae, model, (t1 - t0, time.perf_counter() - t1)


def main_part(seed: int, per_class: int, figure: str | None) -> None:
    train, test = load_digits_images()
    judge = DigitsJudge(train)
    ref = references(judge, train, test)
    print(f"\nReferences (this judge): real test images accuracy {ref['test']['accuracy']:.3f}, FD "
          f"{ref['test']['fd']:.2f}, NN-dist {ref['test']['nn']:.2f}; per-class mean images FD "
          f"{ref['class_means_fd']:.2f}.\n")
    print("| run | VAE test PSNR dB | cond. accuracy | FD (÷ class-means FD) | NN-dist | train s (VAE / LM) | "
          "sample s / 1000 |")
    print("|---|---|---|---|---|---|---|")

    def row(name, vae, model, seconds, **sampling):
        images, labels, t = sample_classes(model, per_class, seed=seed, **sampling)
        m = judge_images(judge, images, labels)
        print(f"| {name} | {reconstruction_psnr(vae, test):.1f} | {m['accuracy']:.3f} | {m['fd']:.2f} "
              f"({m['fd'] / ref['class_means_fd']:.3f}) | {m['nn']:.2f} | {seconds[0]:.0f} / {seconds[1]:.0f} | "
              f"{t * 1000 / len(images):.1f} |", flush=True)
        return images

    vae_a, model_a, sec_a = recipe(train, 0.5, "v_prediction", seed=seed)
    images = row("A: σ-VAE σ-std 0.5, v-prediction, 20 steps, CFG 2 (the recipe)", vae_a, model_a, sec_a)
    if figure:
        order = np.concatenate([np.arange(c * per_class, c * per_class + 10) for c in range(10)])
        image_grid(images[order], 10, 10).save(figure)
    row("A, 250 solver steps", vae_a, model_a, sec_a, steps=250)
    for w in (1.0, 4.0):
        row(f"A, CFG {w:g}", vae_a, model_a, sec_a, guidance=w)
    _, model_b, sec_b = recipe(train, 0.5, "epsilon", seed=seed, vae=vae_a)
    row("B: as A with ε-prediction (the official default)", vae_a, model_b, (sec_a[0], sec_b[1]))
    vae_c, model_c, sec_c = recipe(train, 0.0, "v_prediction", seed=seed)
    row("C: plain autoencoder (σ-std 0, same L2), v-prediction", vae_c, model_c, sec_c)


def cfg_part(seed: int, per_class: int) -> None:
    """Recipe A (retrained: the same seed gives the same model) sampled at several guidance scales."""
    train, test = load_digits_images()
    judge = DigitsJudge(train)
    ref = references(judge, train, test)
    _, model, _ = recipe(train, 0.5, "v_prediction", seed=seed)
    print(f"\nReal test images: accuracy {ref['test']['accuracy']:.3f}, FD {ref['test']['fd']:.2f} "
          f"({ref['test']['fd'] / ref['class_means_fd']:.3f}); class means FD {ref['class_means_fd']:.2f}.\n")
    print("| CFG w | cond. accuracy | FD (÷ class-means FD) | NN-dist |\n|---|---|---|---|")
    for w in (1.0, 1.25, 1.5, 2.0, 3.0, 4.0):
        images, labels, _ = sample_classes(model, per_class, guidance=w, seed=seed)
        m = judge_images(judge, images, labels)
        print(f"| {w:g} | {m['accuracy']:.3f} | {m['fd']:.2f} ({m['fd'] / ref['class_means_fd']:.3f}) | "
              f"{m['nn']:.2f} |", flush=True)


def text_part(seed: int, per_class: int) -> None:
    """One LatentLM over words and digits: "draw a three <image>" (T2I, 10 % without the prompt for guidance) and
    "<image> this is a three" (I2T: the image is input, not a target)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from paperzoo.pipelines.latentlm import LatentLMPipeline
    from paperzoo.processors.latentlm import LatentLMProcessor
    from paperzoo.processors.sigma_vae import SigmaVAEImageProcessor

    train, test = load_digits_images()
    judge = DigitsJudge(train)
    words = ["<pad>", "<bos>", "<eos>", "<unk>", "draw", "a", "this", "is", *CLASS_NAMES]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>",
                                        eos_token="<eos>", unk_token="<unk>")
    # pictures in [0, 1] (the digits' (x + 1) / 2), normalised by the processor to the model's [-1, 1] and back
    processor = LatentLMProcessor(SigmaVAEImageProcessor(do_rescale=False), tokenizer, patch_size=2)
    t0 = time.perf_counter()
    vae = train_vae(train, 0.5, 600, seed)
    rng = np.random.default_rng(seed)
    rows = []
    for x, y in zip(train.images, train.labels):
        prompt = "" if rng.random() < 0.1 else f"draw a {CLASS_NAMES[y]} "
        for text, image_loss in ((f"{prompt}<image> <eos>", True), (f"<image> this is a {CLASS_NAMES[y]} <eos>", False)):
            batch = processor(text=text, images=[(x + 1) / 2], return_labels=True, image_loss=image_loss, padding="max_length",
                              max_length=24)
            rows.append({k: v[0] for k, v in batch.items() if k != "pixel_values"} | {"pixel_values": batch["pixel_values"][0]})
    config = latentlm_config(vae, len(tokenizer), processor.span_token_ids, 0, "v_prediction")
    model = train_latentlm(config, vae, rows, 1200, seed)
    seconds = time.perf_counter() - t0
    pipe = LatentLMPipeline(model=model, processor=processor)
    prompts = [f"draw a {CLASS_NAMES[c]}" for c in range(10)]
    start = time.perf_counter()
    out = pipe(prompt=prompts, num_images_per_prompt=per_class, num_inference_steps=20, guidance_scale=2.0,
               generator=torch.Generator().manual_seed(seed), output_type="pt")
    t2i_seconds = time.perf_counter() - start
    images = out.images.numpy() * 2 - 1
    labels = np.arange(10).repeat(per_class)
    m = judge_images(judge, images, labels)
    start = time.perf_counter()
    answers = pipe.describe(list((test.images + 1) / 2), max_new_tokens=5)
    i2t_seconds = time.perf_counter() - start
    said = [a.split()[-1] if a.split() else "" for a in answers]
    i2t = float(np.mean([s == CLASS_NAMES[y] for s, y in zip(said, test.labels)]))
    exact = float(np.mean([a.strip() == f"this is a {CLASS_NAMES[y]}" for a, y in zip(answers, test.labels)]))
    print("\n| direction | metric | value |\n|---|---|---|")
    print(f"| text → image (\"draw a three\" → digit) | accuracy of the drawn class | {m['accuracy']:.3f} |")
    print(f"| text → image | FD / NN-dist | {m['fd']:.2f} / {m['nn']:.2f} |")
    print(f"| image → text (test image → \"this is a …\") | class named correctly | {i2t:.3f} |")
    print(f"| image → text | whole sentence exact | {exact:.3f} |")
    print(f"\nTraining (σ-VAE 600 + LatentLM 1200 steps) {seconds:.0f} s; text → image {t2i_seconds:.1f} s for "
          f"{len(images)} images; image → text {i2t_seconds:.1f} s for {len(test.images)} images. Examples: "
          f"{answers[:3]}")


def speed_part(seed: int) -> None:
    """ms per image against solver steps, and the share spent in the per-latent sampling loop (head + solver)."""
    from paperzoo.modeling import latentlm_generation as generation

    train, _ = load_digits_images()
    _, model, _ = recipe(train, 0.5, "v_prediction", vae_steps=200, lm_steps=200, seed=seed)
    spent = [0.0]
    real = generation.sample_latents

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = real(*args, **kwargs)
        spent[0] += time.perf_counter() - start
        return out

    generation.sample_latents = timed
    print("\n| solver steps | ms per image (CFG 2) | of which head + solver | ms per image (no CFG) | of which head + "
          "solver |\n|---|---|---|---|---|")
    for steps in (5, 10, 20, 50, 250):
        cells = []
        for w in (2.0, 1.0):
            sample_classes(model, 1, steps=steps, guidance=w, seed=seed)  # warm-up
            spent[0] = 0.0
            _, labels, t = sample_classes(model, 10, steps=steps, guidance=w, seed=seed)
            cells += [f"{t * 1000 / len(labels):.1f}", f"{spent[0] / t:.0%}"]
        print(f"| {steps} | " + " | ".join(cells) + " |", flush=True)
    generation.sample_latents = real


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--part", choices=("main", "cfg", "text", "speed"), default="main")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--figure", default=None, help="PNG path for the 10×10 grid of recipe A (rows: classes)")
    args = parser.parse_args()
    import diffusers
    import transformers

    print(machine_description(" ".join(["python", *sys.argv]), f"torch {torch.__version__}, transformers "
                              f"{transformers.__version__}, diffusers {diffusers.__version__}"))
    if args.part == "main":
        main_part(args.seed, args.per_class, args.figure)
    elif args.part == "cfg":
        cfg_part(args.seed, args.per_class)
    elif args.part == "text":
        text_part(args.seed, args.per_class)
    else:
        speed_part(args.seed)


if __name__ == "__main__":
    main()
