"""RetNetForCausalLM with `fused_linear_cross_entropy=True`: the loss through paperzoo.kernels.linear_cross_entropy
equals transformers' ForCausalLMLoss on the materialised logits, with its gradients, for -100 labels, Trainer's
num_items_in_batch and explicit shift_labels; what `logits` holds in that mode; the config field's validation."""

import os

import pytest
import torch

import paperzoo  # noqa: F401  (registers the Auto classes)
from paperzoo import RetNetConfig, RetNetForCausalLM

VOCAB = 97


def pair(dtype=torch.float32, **overrides):
    """(plain, fused): two tiny RetNets with the same weights, differing only in fused_linear_cross_entropy."""
    kwargs = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48,
                  chunk_size=8, kernel_backend="reference", pad_token_id=0, bos_token_id=1, eos_token_id=2)
    kwargs.update(overrides)
    torch.manual_seed(0)
    plain = RetNetForCausalLM(RetNetConfig(**kwargs)).to(dtype)
    fused = RetNetForCausalLM(RetNetConfig(**kwargs, fused_linear_cross_entropy=True)).to(dtype)
    fused.load_state_dict(plain.state_dict())
    return plain, fused


def batch(B=3, T=13, seed=1):
    """input_ids [B, T] and labels = input_ids with -100 on a padded tail and a few scattered positions."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, VOCAB, (B, T), generator=g)
    labels = ids.clone()
    labels[0, -4:] = -100  # right padding
    labels[1, ::5] = -100
    return ids, labels


def loss_and_grads(model, **kwargs):
    model.zero_grad(set_to_none=True)
    out = model(**kwargs)
    out.loss.backward()
    return out, {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


def assert_same(plain, fused, tol):
    (out_p, grads_p), (out_f, grads_f) = plain, fused
    torch.testing.assert_close(out_f.loss, out_p.loss, rtol=tol, atol=tol)
    assert grads_f.keys() == grads_p.keys() and "model.embed_tokens.weight" in grads_f
    for name in grads_p:
        torch.testing.assert_close(grads_f[name], grads_p[name], rtol=tol, atol=tol, msg=name)


def test_fused_loss_and_gradients_equal_plain():
    plain, fused = pair()
    ids, labels = batch()
    assert "lm_head.weight" in loss_and_grads(fused, input_ids=ids, labels=labels)[1]
    assert_same(loss_and_grads(plain, input_ids=ids, labels=labels),
                loss_and_grads(fused, input_ids=ids, labels=labels), 1e-5)  # fmt: skip


def test_fused_loss_float64():
    """A float64 model keeps a float64 loss (the plain path upcasts its logits to fp32 only): it equals
    F.cross_entropy of the float64 logits, gradients included, to float64 precision."""
    _, fused = pair(torch.float64)
    ids, labels = batch()
    out, grads = loss_and_grads(fused, input_ids=ids, labels=labels)
    fused.zero_grad(set_to_none=True)
    logits = fused(input_ids=ids).logits  # [B, T, vocab] float64
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))
    ref.backward()
    assert out.loss.dtype == torch.float64
    torch.testing.assert_close(out.loss, ref.detach(), rtol=1e-12, atol=1e-12)
    for name, p in fused.named_parameters():
        torch.testing.assert_close(grads[name], p.grad, rtol=1e-10, atol=1e-12, msg=name)


def test_num_items_in_batch_like_trainer():
    """Trainer with gradient accumulation passes the count of target tokens over all micro-batches: the loss is this
    micro-batch's sum divided by it (a tensor, or an int from a custom trainer)."""
    plain, fused = pair()
    ids, labels = batch()
    n_here = int((labels[:, 1:] != -100).sum())
    for count in (torch.tensor(n_here + 17), n_here + 17):
        p = loss_and_grads(plain, input_ids=ids, labels=labels, num_items_in_batch=count)
        f = loss_and_grads(fused, input_ids=ids, labels=labels, num_items_in_batch=count)
        assert_same(p, f, 1e-5)
        mean = loss_and_grads(fused, input_ids=ids, labels=labels)[0].loss
        torch.testing.assert_close(f[0].loss, mean * n_here / (n_here + 17), rtol=1e-5, atol=1e-6)


def test_shift_labels_and_ignore_index():
    plain, fused = pair()
    ids, labels = batch(seed=2)
    shifted = torch.nn.functional.pad(labels, (0, 1), value=-100)[:, 1:].contiguous()
    assert_same(loss_and_grads(plain, input_ids=ids, labels=labels, shift_labels=shifted),
                loss_and_grads(fused, input_ids=ids, labels=labels, shift_labels=shifted), 1e-5)  # fmt: skip
    marked = labels.masked_fill(labels == -100, 5)  # the ignored positions marked with a class index instead
    assert_same(loss_and_grads(plain, input_ids=ids, labels=marked, ignore_index=5),
                loss_and_grads(fused, input_ids=ids, labels=marked, ignore_index=5), 1e-5)  # fmt: skip


def test_tied_embeddings():
    plain, fused = pair(tie_word_embeddings=True)
    assert fused.lm_head.weight is fused.model.embed_tokens.weight
    ids, labels = batch(seed=3)
    assert_same(loss_and_grads(plain, input_ids=ids, labels=labels),
                loss_and_grads(fused, input_ids=ids, labels=labels), 1e-5)  # fmt: skip


def test_logits_in_fused_mode():
    """With labels, `logits` is None for logits_to_keep=0 (nothing materialised) and the requested positions
    otherwise; without labels the fused model is the plain one."""
    plain, fused = pair()
    ids, labels = batch()
    with torch.no_grad():
        full = plain(input_ids=ids).logits
        assert fused(input_ids=ids, labels=labels).logits is None
        torch.testing.assert_close(fused(input_ids=ids, labels=labels, logits_to_keep=1).logits, full[:, -1:])
        keep = torch.tensor([0, 5, 12])
        torch.testing.assert_close(fused(input_ids=ids, labels=labels, logits_to_keep=keep).logits, full[:, keep])
        torch.testing.assert_close(fused(input_ids=ids).logits, full)
        loss = fused(input_ids=ids, labels=labels, logits_to_keep=1).loss  # the loss still covers every position
        torch.testing.assert_close(loss, plain(input_ids=ids, labels=labels).loss, rtol=1e-5, atol=1e-6)


def test_all_labels_ignored_gives_zero_not_nan():
    plain, fused = pair()
    ids, labels = batch()
    labels[:] = -100
    with torch.no_grad():
        assert torch.isnan(plain(input_ids=ids, labels=labels).loss)
    out, grads = loss_and_grads(fused, input_ids=ids, labels=labels)
    assert out.loss.item() == 0.0 and all(not g.any() for g in grads.values())


def test_config_field():
    assert RetNetConfig().fused_linear_cross_entropy is False
    for bad in ("yes", 1, None):
        with pytest.raises(ValueError, match="fused_linear_cross_entropy"):
            RetNetConfig(fused_linear_cross_entropy=bad)
    config = RetNetConfig(fused_linear_cross_entropy=True)
    assert RetNetConfig.from_dict(config.to_dict()).fused_linear_cross_entropy is True


@pytest.mark.skipif(not (torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1"),
                    reason="Triton kernels need CUDA or TRITON_INTERPRET=1")
def test_fused_loss_on_triton():
    """kernel_backend="triton": the loss's Triton kernels (and retention's) against the plain model's loss."""
    pytest.importorskip("triton")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plain, fused = (m.to(device) for m in pair(kernel_backend="triton"))
    ids, labels = (t.to(device) for t in batch(seed=4))
    assert_same(loss_and_grads(plain, input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(40)),
                loss_and_grads(fused, input_ids=ids, labels=labels, num_items_in_batch=torch.tensor(40)), 1e-5)
