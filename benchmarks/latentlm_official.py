"""Parity of paperzoo's LatentLM (trunk + diffusion head, class-conditional) with the REAL official LatentLM
(microsoft/unilm `LatentLM/models/Transformer.py`, `DiT.py`, `RMSNorm.py`, `schedule/`), on CPU.

    mkdir -p /tmp/latentlm_official
    git --git-dir=<mirror of microsoft/unilm> archive HEAD LatentLM | tar -x -C /tmp/latentlm_official
    .venv/bin/python benchmarks/latentlm_official.py [--official /tmp/latentlm_official] [--quick]

Prints a markdown table of max|Δ| per case, the stubs used, the machine, the command and the date. Never imported by
the tests; needs no network.

The official modules are imported unchanged from `--official` (DIR/LatentLM or DIR; the package __init__s, which
pull in EMA and the DiT registry, are not run), with two stubs in sys.modules for the import only:
timm.models.vision_transformer.PatchEmbed (timm, which needs torchvision, is not installed) is a minimal equivalent of
timm's class for norm_layer=None, flatten=True (Conv2d with bias, kernel = stride = patch, then NCHW → NLC); flash_attn
is unimportable, so has_flash_attn2 is False and Attention takes its SDPA path (flash is for fp16/bf16 on sm80+; the
import-time `torch.cuda.get_device_properties(0)` runs only when flash_attn imports). The `apply_rotary_pos_emb` that
Transformer.py imports from kernel/rotary.py is its PyTorch function (interleaved pairs), not the Triton kernel: as
shipped (triton is imported, no kernel launched).

Model: the official class-conditional Transformer as train_hf.py/sample_hf.py build it (load_vae: flatten_input=False,
PatchEmbed with patch 1): hidden 64, depth 2, diffusion_depth 2, 4 heads over 2 K/V heads, mlp_ratio 4, d = 4 on a
4×4 grid, 10 classes. Official init, then every parameter redrawn (N(0, 1/fan_in), biases N(0, 0.1²): the official
init zeroes the adaLN modulations and the output) and copied into paperzoo's LatentLMForConditionalGeneration with a
Llama trunk (`weight_map`: q/k rows from interleaved rotary pairs to rotate_half halves, HF's Llama permutation;
rope_theta = 10000^(K/(K−2)) for the official angle_j = 10000^(−j/(K/2−1)); norm weights 1; `<boi>` embedding 0, as
paperzoo adds the class embedding there). The official trunk has no final norm: Llama's, then the head's condition
RMSNorm, is one RMSNorm up to ε; the ′ rows bypass Llama's (diagnostic). Both in eval mode (no label dropout):
(a) official `forward_diffusion(x, t, condition)` in the training layout (x [B·k, d, 4, 4], float t [B·k, 16]) against
    `diffusion_head` on the flattened rows; (b) official `forward_parallel(x_start, y)` against
    `diffusion_head.condition(h)` at the position before each latent of `[<boi>] + 16 latents + [<eoi>]`;
(c) train_hf.py's loss (vendored DDPMScheduler "cosine", add_noise / get_velocity, model(noisy, t, x_start, y,
    batch_mul=4), F.mse_loss) against `diffusion_loss` for the same (t, ε), reordered from (batch, copy, position) to
    (latent, copy); (d) official `sample_with_cfg` (cfg 4, sample_hf.py's p_sample loop, vendored DPM-Solver) against
    `sample_latents` (diffusers' DPM-Solver) per token, teacher-forced, from the official noise (randn_tensor patched).
Precisions: fp32; fp64 as shipped (each side's fp32 roundings kept: official RMSNorm `x.float()`, rotary table,
sinusoid; HF Llama's RMSNorm and rotary table; paperzoo's fp32 loss); fp64-exact, those lifted and nothing else:
Tensor.float() gives float64 for float64 and integer tensors, DiT.py's `torch.float32` (the sinusoid's frequencies
only) reads float64, the official rotary table is precomputed in float64 by its formula, HF Llama's RMSNorm and rotary
table run in float64 (instance forwards).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # runnable from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from _machine import machine_description, read_loadavg  # noqa: E402  (benchmarks/ is on sys.path)

DEFAULT_DIR = "/tmp/latentlm_official"
H, HEADS, KV_HEADS, DEPTH, HEAD_DEPTH, D, GRID, CLASSES = 64, 4, 2, 2, 2, 4, 4, 10
BATCH, MUL, CFG = 2, 4, 4.0
BOI, EOI, SLOT = 1, 2, 3
K = H // HEADS  # head dim
STUBS: list[str] = []


# ------------------------------------------------------------------------------------------------------- stubs


class PatchEmbed(nn.Module):
    """timm.layers.PatchEmbed for norm_layer=None, flatten=True, bias=True: [B, C, H, W] → [B, H·W/p², dim]."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, norm_layer=None, flatten=True,
                 bias=True, strict_img_size=True):
        super().__init__()
        if norm_layer is not None or not flatten:
            raise NotImplementedError("PatchEmbed stub: norm_layer=None, flatten=True only")
        self.patch_size, self.num_patches = (patch_size, patch_size), (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, bias=bias)
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


def load_official(path: Path) -> types.SimpleNamespace:
    """Transformer.py, DiT.py and the vendored schedulers, imported from the files at `path` with the stubs in place."""
    root = next((r for r in (path / "LatentLM", path) if (r / "models" / "Transformer.py").is_file()), None)
    if root is None:
        sys.exit(f"official code not found at {path}: export it with\n  mkdir -p {path} && git --git-dir=<mirror of "
                 f"microsoft/unilm> archive HEAD LatentLM | tar -x -C {path}\n(the `fetch` tool's mirror is a bare git "
                 "directory: <mirror>/repo)")
    import diffusers.schedulers  # noqa: F401  (before the stubs: diffusers probes for timm and flash_attn)
    import paperzoo  # noqa: F401

    for name in ("models", "schedule"):  # packages whose __init__ is not run
        sys.modules[f"latentlm_official_{name}"] = package = types.ModuleType(f"latentlm_official_{name}")
        package.__path__ = [str(root / name)]
    stubs = {"timm": types.ModuleType("timm"), "timm.models": types.ModuleType("timm.models"),
             "timm.models.vision_transformer": types.ModuleType("timm.models.vision_transformer"), "flash_attn": None}
    stubs["timm.models.vision_transformer"].PatchEmbed = PatchEmbed
    saved = {name: sys.modules.get(name, "absent") for name in stubs}
    sys.modules.update(stubs)
    try:
        with contextlib.redirect_stdout(sys.stderr):  # it prints "flash_attn2 not found"
            mods = {name: importlib.import_module(f"latentlm_official_{pkg}.{name}")
                    for pkg, name in (("models", "Transformer"), ("models", "DiT"), ("schedule", "ddpm"),
                                      ("schedule", "dpm_solver"))}
    finally:  # transformers must not see a timm or flash_attn module
        for name, module in saved.items():
            sys.modules.pop(name) if module == "absent" else sys.modules.__setitem__(name, module)
    assert not mods["Transformer"].has_flash_attn2
    STUBS.extend([f"official code: {root}, unchanged (kernel/rotary's PyTorch `apply_rotary_pos_emb`, no Triton)",
                  "timm PatchEmbed → minimal equivalent (Conv2d, bias, NCHW → NLC); flash_attn → unimportable (SDPA)"])
    return types.SimpleNamespace(**mods)


# ------------------------------------------------------------------------------------------------ the models


def halves(w: torch.Tensor) -> torch.Tensor:
    """q/k rows of each head from interleaved rotary pairs (0, 1), (2, 3)… to rotate_half halves (HF's permute)."""
    return w.view(-1, K // 2, 2, w.shape[-1]).transpose(1, 2).reshape(w.shape)


def weight_map(official) -> dict[str, tuple[str, callable]]:
    """paperzoo parameter name → (official parameter name, transform)."""
    same, conv = (lambda w: w), (lambda w: w[:, :, 0, 0])
    kv = KV_HEADS * K
    m = {"model.latent_proj.weight": ("x_embedder.proj.weight", conv),
         "model.latent_proj.bias": ("x_embedder.proj.bias", same),
         "model.class_embedding.weight": ("y_embedder.embedding_table.weight", same),
         "diffusion_head.condition_proj.weight": ("condition_layer.linear.weight", same),
         "diffusion_head.noisy_latent_proj.weight": ("noisy_x_embedder.proj.weight", conv),
         "diffusion_head.noisy_latent_proj.bias": ("noisy_x_embedder.proj.bias", same),
         "diffusion_head.timestep_embedding.linear_1.weight": ("t_embedder.mlp.0.weight", same),
         "diffusion_head.timestep_embedding.linear_2.weight": ("t_embedder.mlp.2.weight", same),
         "diffusion_head.final_layer.modulation.weight": ("final_layer.adaLN_modulation.1.weight", same),
         "diffusion_head.final_layer.linear.weight": ("final_layer.linear.weight", same)}
    for i in range(DEPTH):
        o, p = f"blocks.{i}.", f"model.language_model.layers.{i}."
        m[p + "self_attn.q_proj.weight"] = (o + "attn.qkv.weight", lambda w: halves(w[:H]))
        m[p + "self_attn.k_proj.weight"] = (o + "attn.qkv.weight", lambda w: halves(w[H:H + kv]))
        m[p + "self_attn.v_proj.weight"] = (o + "attn.qkv.weight", lambda w: w[H + kv:])
        m[p + "self_attn.o_proj.weight"] = (o + "attn.proj.weight", same)
    for i in range(HEAD_DEPTH):
        m[f"diffusion_head.blocks.{i}.modulation.weight"] = (f"diffusion_blocks.{i}.adaLN_modulation.1.weight", same)
    for o, p in [(f"blocks.{i}.", f"model.language_model.layers.{i}.") for i in range(DEPTH)] + \
            [(f"diffusion_blocks.{i}.", f"diffusion_head.blocks.{i}.") for i in range(HEAD_DEPTH)]:
        for ours, theirs in (("gate_proj", "fc1"), ("up_proj", "gate"), ("down_proj", "fc2")):  # SwiGLU
            m[p + f"mlp.{ours}.weight"] = (o + f"mlp.{theirs}.weight", same)
    unmapped = set(official.state_dict()) - {name for name, _ in m.values()}
    assert not unmapped, f"official parameters without a paperzoo counterpart: {sorted(unmapped)}"
    return m


def build_pair(off, dtype, seed: int = 0):
    import paperzoo
    from transformers import LlamaConfig

    torch.manual_seed(seed)
    official = off.Transformer.Transformer(
        input_size=GRID, patch_size=1, flatten_input=False, in_channels=D, hidden_size=H, depth=DEPTH,
        diffusion_depth=HEAD_DEPTH, num_heads=HEADS, num_kv_heads=KV_HEADS, mlp_ratio=4.0, class_dropout_prob=0.1,
        num_classes=CLASSES)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # redraw everything: the official init zeroes the adaLN modulations and the output
        for p in official.parameters():
            std = p[0].numel() ** -0.5 if p.dim() > 1 else 0.1
            p.copy_(torch.randn(p.shape, generator=gen) * std)
    text = LlamaConfig(vocab_size=8, hidden_size=H, intermediate_size=int(H * 4 * 2 / 3 / 64) * 64,
                       num_hidden_layers=DEPTH, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                       rms_norm_eps=1e-6, rope_theta=10000.0 ** (K / (K - 2)), max_position_embeddings=64)
    config = paperzoo.LatentLMConfig(
        text_config=text, vae_config=dict(latent_channels=D, image_size=2 * GRID, patch_size=2),
        head_config=dict(num_hidden_layers=HEAD_DEPTH, latent_size=D), boi_token_id=BOI, eoi_token_id=EOI,
        latent_token_id=SLOT, num_classes=CLASSES, label_dropout=0.1, ddpm_batch_mul=MUL,
        prediction_type="v_prediction")
    ours = paperzoo.LatentLMForConditionalGeneration(config)
    params, theirs = dict(ours.named_parameters()), official.state_dict()
    with torch.no_grad():
        for name, (src, fn) in weight_map(official).items():
            params[name].copy_(fn(theirs[src]))
        for name, p in params.items():
            if name.startswith("model.language_model.") and name.endswith("norm.weight"):
                p.fill_(1.0)  # the official RMSNorms have no weight
        ours.model.get_input_embeddings().weight[BOI].zero_()  # <boi> input = the class embedding alone
    return official.to(dtype).eval(), ours.to(dtype).eval()


def _rms_norm64(self, x):  # LlamaRMSNorm without its fp32 cast
    return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon))


def _rotary64(self, x, position_ids):  # LlamaRotaryEmbedding (default rope) with the table in float64
    theta = self.config.rope_parameters["rope_theta"]
    inv_freq = 1.0 / theta ** (torch.arange(0, K, 2, dtype=torch.float64) / K)
    emb = (position_ids[..., None].double() * inv_freq).repeat(1, 1, 2)
    return emb.cos().to(x.dtype), emb.sin().to(x.dtype)


@contextlib.contextmanager
def exact_float64(official, ours):
    from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding

    float_method = torch.Tensor.float
    angle = 1.0 / (10000.0 ** torch.linspace(0, 1, K // 2, dtype=torch.float64))  # the official formula
    official._precomputed_freqs_cis = torch.arange(GRID * GRID, dtype=torch.float64)[:, None] * angle
    dit = sys.modules[type(official.t_embedder).__module__]  # DiT.py: torch.float32 only types the sinusoid's freqs
    dit.torch = types.ModuleType("torch")
    dit.torch.__dict__.update(vars(torch), float32=torch.float64)
    patched = [m for m in ours.modules() if isinstance(m, (LlamaRMSNorm, LlamaRotaryEmbedding))]
    for m in patched:
        m.forward = types.MethodType(_rms_norm64 if isinstance(m, LlamaRMSNorm) else _rotary64, m)

    def lifted_float(self, *args, **kwargs):  # float64 stays, integers become float64, the rest as shipped
        if self.dtype == torch.float64 or not self.is_floating_point():
            return self.double()
        return float_method(self, *args, **kwargs)

    torch.Tensor.float = lifted_float
    try:
        yield
    finally:
        torch.Tensor.float = float_method
        dit.torch = torch
        official._precomputed_freqs_cis = None
        for m in patched:
            del m.forward


# ---------------------------------------------------------------------------------------------------- the cases


def span_ids(rows: int, latents: int) -> torch.Tensor:
    """[<boi>] + `latents` placeholders (+ [<eoi>] when the span is complete)."""
    ids = [BOI] + [SLOT] * latents + ([EOI] if latents == GRID * GRID else [])
    return torch.tensor(ids).expand(rows, -1)


def condition_cases(official, ours, x_start, y, row):
    """(b): official forward_parallel against paperzoo's conditions at the positions before the latents."""
    latents = x_start.flatten(2).transpose(1, 2)  # [B, N, d] raster order, as PatchEmbed flattens
    ref = official.forward_parallel(x_start, y)  # [B, N, H]
    for tag, bypass in (("", contextlib.nullcontext()), ("′", final_norm_bypassed(ours))):
        with bypass:
            hidden = ours.model(span_ids(BATCH, ref.shape[1]), latents=latents, class_labels=y).last_hidden_state
        row(f"(b{tag}) conditions", ours.diffusion_head.condition(hidden[:, :ref.shape[1]]), ref)


@contextlib.contextmanager
def final_norm_bypassed(ours):
    """The trunk without Llama's final norm (diagnostic: isolates the double-norm difference of (b))."""
    lm = ours.model.language_model
    norm, lm.norm = lm.norm, nn.Identity()
    try:
        yield
    finally:
        lm.norm = norm


def loss_case(off, official, ours, x_start, y, prediction, gen, row, tag=""):
    """(c): train_hf.py's Transformer-branch loss against paperzoo's diffusion_loss for the same (t, ε)."""
    sched = off.ddpm.DDPMScheduler(num_train_timesteps=1000, beta_schedule="cosine", prediction_type=prediction)
    bsz, latent_size, h, w = x_start.shape
    noise = torch.randn((bsz * MUL * h * w, latent_size), generator=gen, dtype=x_start.dtype)
    timesteps = torch.randint(0, 1000, (bsz * MUL * h * w,), generator=gen)
    # train_hf.py lines 297-316 with the draws above (torch.multinomial over uniform weights = uniform t)
    repeated = x_start.repeat_interleave(MUL, dim=0).permute(0, 2, 3, 1).reshape(-1, latent_size)
    noisy = sched.add_noise(repeated, noise, timesteps)
    velocity = sched.get_velocity(repeated, noise, timesteps)
    noisy, noise_img, velocity = [x.reshape(bsz * MUL, h, w, latent_size).permute(0, 3, 1, 2)
                                  for x in (noisy, noise, velocity)]
    out = official(noisy.to(x_start.dtype), timesteps.reshape(bsz * MUL, h * w).to(x_start.dtype), x_start=x_start,
                   y=y, batch_mul=MUL)
    ref = F.mse_loss(out.float(), (velocity if prediction == "v_prediction" else noise_img).float())
    # paperzoo: latents in (batch, position) order, draws [L, k] / [L, k, d] in (latent, copy) order
    ours.config.prediction_type = prediction
    mask = torch.zeros(bsz, h * w + 2, dtype=torch.bool)
    mask[:, :h * w] = True  # the position before each latent
    got = ours(span_ids(bsz, h * w), latents=x_start.flatten(2).transpose(1, 2), class_labels=y,
               latent_loss_mask=mask, diffusion_timesteps=timesteps.view(bsz, MUL, h * w).transpose(1, 2),
               diffusion_noise=noise.view(bsz, MUL, h * w, latent_size).transpose(1, 2)).diffusion_loss
    row(f"(c{tag}) training loss, {prediction}", got, ref)


def sample_case(off, official, ours, y, prediction, steps, row, tag=""):
    """(d): official sample_with_cfg (vendored DPM-Solver) against paperzoo's sample_latents, token by token."""
    import diffusers.utils.torch_utils as torch_utils
    from paperzoo.modeling.latentlm_generation import build_noise_scheduler, sample_latents

    sched = off.dpm_solver.DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_schedule="cosine",
                                                        prediction_type=prediction)
    draws = []

    def p_sample(model, image):  # sample_hf.py's p_sample, recording the initial noise
        draws.append(image.clone())
        sched.set_timesteps(steps)
        for t in sched.timesteps:
            model_output = model(image, t.repeat(image.shape[0]).to(image))
            image = sched.step(model_output, t, image).prev_sample
        return image

    torch.manual_seed(7)
    samples = official.sample_with_cfg(torch.cat([y, torch.full_like(y, CLASSES)]), CFG, p_sample)
    tokens = samples.flatten(2).transpose(1, 2)  # [B, N, d] raster order
    ours.config.prediction_type = prediction
    scheduler, head, got = build_noise_scheduler(ours.config), ours.diffusion_head, []
    randn_tensor = torch_utils.randn_tensor
    try:
        for i in range(tokens.shape[1]):
            prefix = tokens[:, :i] if i else None
            c, u = (ours.model(span_ids(BATCH, i), latents=prefix, class_labels=labels).last_hidden_state[:, -1]
                    for labels in (y, torch.full_like(y, CLASSES)))
            noise = draws[i][:BATCH].reshape(BATCH, D)
            torch_utils.randn_tensor = lambda shape, generator=None, device=None, dtype=None, **_: noise.to(dtype)
            got.append(sample_latents(head, scheduler, steps, head.condition(c), head.condition(u), CFG))
    finally:
        torch_utils.randn_tensor = randn_tensor
    row(f"(d{tag}) sampled latents, {prediction}, {steps} steps, cfg {CFG:g}", torch.stack(got, 1), tokens)


def run_precision(off, precision: str, steps: int) -> list[dict]:
    dtype = torch.float32 if precision == "fp32" else torch.float64
    official, ours = build_pair(off, dtype)
    gen = torch.Generator().manual_seed(1234)
    x_start = torch.randn(BATCH, D, GRID, GRID, generator=gen, dtype=dtype)
    y = torch.tensor([3, 8])
    rows = []

    def row(what, got, ref):
        rows.append(dict(precision=precision, what=what, diff=(got.to(ref.dtype) - ref).abs().max().item(),
                         scale=ref.abs().max().item()))

    exact = precision == "fp64-exact"
    with exact_float64(official, ours) if exact else contextlib.nullcontext(), torch.no_grad():
        n = GRID * GRID  # (a): the training layout of forward_diffusion
        x = torch.randn(BATCH * MUL, D, GRID, GRID, generator=gen, dtype=dtype)
        t = torch.randint(0, 1000, (BATCH * MUL, n), generator=gen).to(dtype)
        cond = torch.randn(BATCH * MUL, n, H, generator=gen, dtype=dtype)
        ref = official.forward_diffusion(x, t, cond).permute(0, 2, 3, 1).reshape(-1, D)
        got = ours.diffusion_head(x.permute(0, 2, 3, 1).reshape(-1, D), t.reshape(-1), cond.reshape(-1, H))
        row("(a) head output (forward_diffusion, float t)", got, ref)
        condition_cases(official, ours, x_start, y, row)
        for tag in ("", "′") if exact else ("",):  # ′: Llama's final norm bypassed (diagnostic)
            with final_norm_bypassed(ours) if tag else contextlib.nullcontext():
                for prediction in ("v_prediction", "epsilon"):
                    loss_case(off, official, ours, x_start, y, prediction, torch.Generator().manual_seed(9), row, tag)
                    sample_case(off, official, ours, y, prediction, steps, row, tag)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--official", default=DEFAULT_DIR, help=f"exported official code (default {DEFAULT_DIR})")
    parser.add_argument("--quick", action="store_true", help="fp32 and fp64-exact only")
    parser.add_argument("--steps", type=int, default=20, help="DPM-Solver steps per latent in (d) (default 20)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1),
                        help="torch.set_num_threads (default: the cores, at most 4)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    off = load_official(Path(args.official))
    command = " ".join([".venv/bin/python" if ".venv" in sys.executable else Path(sys.executable).name,
                        os.path.relpath(__file__, Path.cwd()) if Path(__file__).is_relative_to(Path.cwd())
                        else __file__, *sys.argv[1:]])
    import diffusers
    import transformers

    versions = (f"torch {torch.__version__}, transformers {transformers.__version__}, diffusers "
                f"{diffusers.__version__}, {torch.get_num_threads()} threads")
    print("## LatentLM: paperzoo vs the official code (CPU)\n")
    print(machine_description(command, versions) + "\n")
    rows, t0 = [], time.perf_counter()
    for precision in ("fp32", "fp64-exact") if args.quick else ("fp32", "fp64", "fp64-exact"):
        start = time.perf_counter()
        rows.extend(run_precision(off, precision, args.steps))
        print(f"[{precision}] {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    print("| case | precision | max abs Δ | max abs official | relative |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['what']} | {r['precision']} | {r['diff']:.2e} | {r['scale']:.3g} | "
              f"{r['diff'] / r['scale']:.1e} |")
    print("\nStubs and notes:\n" + "\n".join(f"- {s}" for s in STUBS))
    print(f"- model: hidden {H}, depth {DEPTH}, diffusion_depth {HEAD_DEPTH}, {HEADS} heads / {KV_HEADS} K/V heads, "
          f"d = {D}, {GRID}×{GRID} latents, batch {BATCH}, ddpm_batch_mul {MUL}, {CLASSES} classes; Llama rope_theta "
          f"10000^({K}/{K - 2}) = {10000.0 ** (K / (K - 2)):.1f}")
    print("- (b): Llama final norm + condition norm = x/√(ms + ε(ms + ε)) vs the official x/√(ms + ε) (ms = mean(x²), "
          "ε = 1e-6): relative ≈ ε(ms − 1)/(2ms) < 5e-7; ′ rows bypass Llama's final norm (diagnostic)")
    print("- (d): 16 tokens per image, each sampled by paperzoo from the official samples before it (teacher-forced), "
          "official DPM-Solver (schedule/dpm_solver.py) vs diffusers'")
    print(f"\nWall time {time.perf_counter() - t0:.0f} s; load average at the end: {read_loadavg()}")


if __name__ == "__main__":
    main()
