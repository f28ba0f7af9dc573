"""Test-session settings shared by every test."""

import torch

# `make test` runs two pytest workers on two cores: one intra-op thread each avoids oversubscription, under which
# the many tiny matmuls of these tests run 10-50x slower (threads spinning against each other).
torch.set_num_threads(1)
