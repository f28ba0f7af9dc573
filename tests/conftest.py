"""Test-session settings shared by every test."""

import os

import torch

# Without a GPU, Triton kernels are checked in Triton's CPU interpreter. It is chosen when the kernels are defined,
# so the variable is set here, before any test imports paperzoo (make test sets it as well).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# `make test` runs two pytest workers on two cores: one intra-op thread each avoids oversubscription, under which
# the many tiny matmuls of these tests run 10-50x slower (threads spinning against each other).
torch.set_num_threads(1)
