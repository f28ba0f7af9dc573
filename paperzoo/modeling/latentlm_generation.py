"""LatentLM generation: text as usual, and inside an image span one diffusion sampling per latent.

transformers' own `generate` runs the loop (greedy, sampling, stopping criteria, streamers, KV cache of any backbone);
a `LatentStream` rides along in the model kwargs:
- a logits processor forces the span: after `<boi>`, `n` latent placeholders, then `<eoi>`; outside a span the
  placeholder and `<eoi>` are never chosen;
- after each forward, for every row whose next token is a placeholder, the head samples its latent from the last
  hidden state (the condition of the position before it): a fresh multistep scheduler state per latent
  (`set_timesteps`), the same initial noise for both classifier-free-guidance halves, the guided prediction
  u + w (c − u) given to `step()`. The unconditional half conditions on `<boi>` (null class in class mode) plus the
  span's latents so far, with its own KV cache while the rows sample in lockstep (the conditional half is the
  KV-cached main pass);
- the next forward places that latent at the placeholder (latent_proj), like a sampled token fed back.
"""

from __future__ import annotations

import inspect

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..configuration.latentlm import check_guidance_scale, check_noise_scheduler

GENERATION_OPTIONS = ("num_inference_steps", "guidance_scale", "noise_scheduler")


def build_noise_scheduler(config, scheduler=None):
    """A diffusers scheduler on the training schedule: `scheduler` None or a class name (`noise_scheduler_class`) is
    built from (num_train_timesteps, beta_schedule, prediction_type); an instance must share its prediction type."""
    import diffusers

    if scheduler is None or isinstance(scheduler, str):
        cls = getattr(diffusers, check_noise_scheduler(scheduler or config.noise_scheduler_class))
        return cls.from_config({"num_train_timesteps": config.num_train_timesteps,
                                "beta_schedule": config.beta_schedule, "prediction_type": config.prediction_type})
    if not isinstance(scheduler, diffusers.SchedulerMixin):
        raise ValueError(f"noise_scheduler={type(scheduler).__name__} is neither a diffusers scheduler nor a class name")
    got = scheduler.config.get("prediction_type")
    if got != config.prediction_type:
        raise ValueError(f"noise_scheduler has prediction_type={got!r}; the head was trained for "
                         f"{config.prediction_type!r}")
    return scheduler


def sample_latents(head, scheduler, num_inference_steps: int, condition, uncondition=None, guidance_scale=1.0,
                   generator=None):
    """One latent per row of `condition` [n, W] (a head condition): start from N(0, I) · init_noise_sigma and run the
    scheduler's steps; with `uncondition` [n, W], classifier-free guidance u + w (c − u) on the head's output, both
    halves from the same noise. The scheduler state is reset (`set_timesteps`) first: nothing carries over from the
    previous latent. Returns [n, d] in fp32."""
    from diffusers.utils.torch_utils import randn_tensor

    n, device = condition.shape[0], condition.device
    scheduler.set_timesteps(num_inference_steps, device=device)
    dtype = torch.promote_types(condition.dtype, torch.float32)  # the solver's arithmetic: at least fp32
    x = randn_tensor((n, head.latent_size), generator=generator, device=device, dtype=dtype)
    x = x * scheduler.init_noise_sigma
    step_kwargs = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
    for t in scheduler.timesteps:
        x_in = scheduler.scale_model_input(x, t)
        out = guided_prediction(head, x_in, t, condition, uncondition, guidance_scale)
        x = scheduler.step(out, t, x, **step_kwargs).prev_sample
    return x


def guided_prediction(head, x, t, condition, uncondition=None, guidance_scale=1.0):
    """The head's prediction at (x [n, d], scalar t), guided: u + w (c − u) from one doubled batch."""
    n = x.shape[0]
    if uncondition is None:
        return head(x, t.expand(n), condition).to(x.dtype)
    both = head(torch.cat([x, x]), t.expand(2 * n), torch.cat([condition, uncondition])).to(x.dtype)
    cond, uncond = both.chunk(2)
    return uncond + guidance_scale * (cond - uncond)


class LatentStream:
    """Per-row latents of one `generate` call (those of the prompt's placeholders, then the sampled ones) and the
    sampling settings."""

    def __init__(self, model, history, num_latents, scheduler, num_inference_steps, guidance_scale, generator,
                 num_beams, on_latent=None):
        c = model.config
        self.boi, self.eoi, self.slot = c.boi_token_id, c.eoi_token_id, c.latent_token_id
        self.history = history  # list (rows) of lists of [d] tensors
        self.num_latents = num_latents
        self.scheduler, self.steps, self.guidance_scale = scheduler, num_inference_steps, guidance_scale
        self.generator, self.num_beams = generator, num_beams
        self.on_latent = on_latent  # called after each sampling step with the rows that got a latent
        self.pending = None  # [B] bool: rows whose next token is a placeholder (set by plan)
        self.span_count = []  # per row: placeholders since its last <boi> (set by plan)
        self.uncond_cache = None  # (rows, latents fed, cache) of the unconditional branch, for rows in lockstep

    def span_state(self, input_ids):
        """(in_span [B] bool, placeholders since the row's last <boi> [B])."""
        B, T = input_ids.shape
        if T == 0:  # generation from inputs_embeds starts with no ids
            return torch.zeros(B, dtype=torch.bool, device=input_ids.device), input_ids.new_zeros(B)
        pos = torch.arange(T, device=input_ids.device).expand_as(input_ids)
        none = torch.full_like(pos, -1)
        last_boi = torch.where(input_ids == self.boi, pos, none).amax(1)
        last_eoi = torch.where(input_ids == self.eoi, pos, none).amax(1)
        in_span = last_boi > last_eoi
        count = ((input_ids == self.slot) & (pos > last_boi[:, None])).sum(1)
        return in_span, count

    def expand_rows(self, rows: int):
        if len(self.history) != rows:  # num_return_sequences / beams expand the batch inside generate
            repeat = rows // len(self.history)
            self.history = [list(h) for h in self.history for _ in range(repeat)]

    def plan(self, input_ids, new_tokens: int):
        """Before a forward: the latents of the placeholders among the last `new_tokens` tokens [m, d] (or None), and
        which rows will need a sampled latent after it."""
        self.expand_rows(input_ids.shape[0])
        in_span, count = self.span_state(input_ids)
        self.pending, self.span_count = in_span & (count < self.num_latents), count.tolist()
        if self.pending.any() and self.num_beams > 1:
            raise ValueError(f"num_beams={self.num_beams}: beam search cannot sample image latents (each beam would "
                             f"need its own draws); generate images with num_beams=1 (greedy or sampling)")
        if new_tokens == 0:
            return None
        fed = (input_ids[:, -new_tokens:] == self.slot).sum(1).tolist()
        rows = []
        for b, m in enumerate(fed):
            if m > len(self.history[b]):
                raise ValueError(f"row {b} has {m} latent placeholders to feed but only {len(self.history[b])} latents")
            rows += self.history[b][len(self.history[b]) - m:] if m else []
        return torch.stack(rows) if rows else None

    @torch.no_grad()
    def sample(self, model, last_hidden):
        """After a forward: sample the latent of every pending row from its last hidden state [B, H]."""
        if self.pending is None or not self.pending.any():
            return
        rows = self.pending.nonzero().flatten()
        head = model.diffusion_head
        condition = head.condition(last_hidden[rows])
        uncondition = None
        if self.guidance_scale != 1:
            uncondition = head.condition(self.unconditional_hidden(model, rows))
        z = sample_latents(head, self.scheduler, self.steps, condition, uncondition, self.guidance_scale,
                           self.generator)
        for i, b in enumerate(rows.tolist()):
            self.history[b].append(z[i].to(last_hidden.dtype))
        if self.on_latent is not None:
            self.on_latent(rows)

    def unconditional_hidden(self, model, rows):
        """The last hidden state of `<boi>` (null class) + the span's latents so far, for each row. Rows that sample
        in lockstep (the usual case: one prompt batch, spans started together) share one KV cache, fed the latent
        each row got since the last call; otherwise the sequences are recomputed, grouped by span length (no padding),
        and the cache is started again when the rows are in lockstep."""
        keys, counts = rows.tolist(), [self.span_count[b] for b in rows.tolist()]
        cached = self.uncond_cache
        if cached is not None and cached[0] == keys and all(n == cached[1] + 1 for n in counts):
            latents = torch.stack([self.history[b][-1] for b in keys])[:, None]  # [R, 1, d]
            ids = torch.full((len(keys), 1), self.slot, device=latents.device)
            out = model.model(ids, latents=latents, cache=cached[2], use_cache=True)
            self.uncond_cache = (keys, counts[0], out.cache)
            return out.last_hidden_state[:, -1]
        groups = {}
        for b, n in zip(keys, counts):
            groups.setdefault(n, []).append(b)
        hidden = {}
        for n, group in groups.items():
            out = self.unconditional_prefix(model, group, n, use_cache=len(groups) == 1)
            hidden.update(zip(group, out.last_hidden_state[:, -1]))
            self.uncond_cache = (keys, n, out.cache) if len(groups) == 1 else None
        return torch.stack([hidden[b] for b in keys])

    def unconditional_prefix(self, model, group, n, use_cache):
        """One forward of the guidance prefix, `<boi>` (null class) and the last `n` latents of each row of `group`."""
        c = model.config
        device = model.lm_head.weight.device
        prefix = torch.tensor(c.guidance_prefix_ids + [self.boi], device=device)
        ids = torch.cat([prefix.expand(len(group), -1),
                         torch.full((len(group), n), self.slot, device=device)], 1)
        latents = torch.stack([torch.stack(self.history[b][len(self.history[b]) - n:]) for b in group]) if n else None
        labels = torch.full((len(group),), c.num_classes, device=device) if c.num_classes else None
        return model.model(ids, latents=latents, class_labels=labels, use_cache=use_cache)


class LatentSpanLogitsProcessor(LogitsProcessor):
    """Inside a span: the placeholder until `num_latents` are placed, then `<eoi>`; outside: never a placeholder or
    `<eoi>`."""

    def __init__(self, stream: LatentStream):
        self.stream = stream

    def __call__(self, input_ids, scores):
        s = self.stream
        in_span, count = s.span_state(input_ids)
        forced = torch.full_like(scores, float("-inf"))
        slot_rows, end_rows = in_span & (count < s.num_latents), in_span & (count >= s.num_latents)
        forced[:, s.slot] = 0
        scores = torch.where(slot_rows[:, None], forced, scores)
        forced[:, s.slot], forced[:, s.eoi] = float("-inf"), 0
        scores = torch.where(end_rows[:, None], forced, scores)
        banned = ~in_span
        scores[banned, s.slot] = float("-inf")
        scores[banned, s.eoi] = float("-inf")
        return scores


class LatentLMGenerationMixin:
    """`generate` for LatentLM (mixed before GenerationMixin)."""

    def generate(self, inputs=None, generation_config=None, logits_processor=None, **kwargs):
        """transformers' `generate`, plus image spans. Extra arguments: `pixel_values` / `latents` for the prompt's
        placeholders (images to understand; encoded with μ), `class_labels` [B] (class-conditional mode),
        `num_inference_steps`, `guidance_scale` (w; 1 = no guidance), `noise_scheduler` (a diffusers scheduler
        class name or instance), `latent_generator` (a torch.Generator for the latent noise), `num_latents` (latents
        per generated span; default the VAE's image_size grid), `latent_callback` (called with the rows that got a latent,
        after each sampling). With `return_dict_in_generate=True` the output's
        `latents` lists, per row, the normalised latents of all its placeholders [n, d] (`decode_latents` → pixels)."""
        c = self.config
        options = {name: kwargs.pop(name, None) for name in GENERATION_OPTIONS}
        pixel_values, latents = kwargs.pop("pixel_values", None), kwargs.pop("latents", None)
        generator, num_latents = kwargs.pop("latent_generator", None), kwargs.pop("num_latents", None)
        on_latent = kwargs.pop("latent_callback", None)
        if c.latent_token_id is None:
            if pixel_values is not None or latents is not None:
                raise ValueError("pixel_values / latents given but config.latent_token_id is None: no image spans")
            return super().generate(inputs, generation_config, logits_processor, **kwargs)
        # the latents' guidance: transformers' own `guidance_scale` (classifier-free guidance of text logits, which
        # needs a negative prompt LatentLM does not have) is taken here and cleared from the config generate reads
        gen_config = generation_config or self.generation_config
        for name in options:
            if options[name] is None:
                options[name] = getattr(gen_config, name, None)
        steps = c.num_inference_steps if options["num_inference_steps"] is None else options["num_inference_steps"]
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= 0:
            raise ValueError(f"num_inference_steps={steps!r} must be a positive integer")
        guidance = check_guidance_scale(c.guidance_scale if options["guidance_scale"] is None
                                        else options["guidance_scale"])
        scheduler = build_noise_scheduler(c, options["noise_scheduler"])
        ids = inputs if inputs is not None else kwargs.get("input_ids")
        rows = ids.shape[0] if ids is not None else kwargs["inputs_embeds"].shape[0]
        history = self.prompt_latents(ids, rows, pixel_values, latents)
        num_beams = kwargs.get("num_beams", getattr(gen_config, "num_beams", 1)) or 1
        stream = LatentStream(self, history, num_latents or c.vae_config.latents_per_image, scheduler, steps,
                              guidance, generator, num_beams, on_latent)
        processors = LogitsProcessorList(logits_processor or [])
        processors.append(LatentSpanLogitsProcessor(stream))
        # guidance_scale=1: no text guidance (None would be filled in again from the model's generation config)
        out = super().generate(inputs, generation_config, processors, latent_stream=stream, guidance_scale=1.0,
                               **kwargs)
        if not isinstance(out, torch.Tensor):
            d = c.vae_config.latent_channels
            out.latents = [torch.stack(h) if h else torch.empty(0, d, device=self.device) for h in stream.history]
        return out

    def prompt_latents(self, input_ids, rows, pixel_values, latents):
        """Per-row lists of the normalised latents of the prompt's placeholders (μ of `pixel_values`)."""
        if pixel_values is not None:
            latents = self.model.encode_images(pixel_values, sample=False)
        history = [[] for _ in range(rows)]
        if latents is None:
            return history
        if input_ids is None:
            raise ValueError("latents need input_ids with their placeholders")
        flat = latents.reshape(-1, latents.shape[-1]).to(self.dtype)
        counts = (input_ids == self.config.latent_token_id).sum(1).tolist()
        if sum(counts) != flat.shape[0]:
            raise ValueError(f"{flat.shape[0]} latents for {sum(counts)} latent placeholders in input_ids")
        start = 0
        for b, n in enumerate(counts):
            history[b] = list(flat[start:start + n])
            start += n
        return history

    def prepare_inputs_for_generation(self, input_ids, next_sequence_length=None, cache=None, attention_mask=None,
                                      inputs_embeds=None, is_first_iteration=False, latent_stream=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(
            input_ids, next_sequence_length=next_sequence_length, cache=cache, attention_mask=attention_mask,
            inputs_embeds=inputs_embeds, is_first_iteration=is_first_iteration, **kwargs)
        if latent_stream is not None:
            fed = inputs.get("input_ids")
            new_tokens = fed.shape[1] if fed is not None else 0
            inputs["latents"] = latent_stream.plan(input_ids, new_tokens)
        return inputs

    def _update_model_kwargs_for_generation(self, outputs, model_kwargs, *args, **kwargs):
        stream = model_kwargs.get("latent_stream")
        if stream is not None and outputs.last_hidden_state is not None:
            stream.sample(self, outputs.last_hidden_state[:, -1])
        return super()._update_model_kwargs_for_generation(outputs, model_kwargs, *args, **kwargs)
