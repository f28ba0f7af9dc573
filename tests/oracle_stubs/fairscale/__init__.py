"""Stub of fairscale for the torchscale oracle: only `fairscale.nn.checkpoint_wrapper` and `fairscale.nn.wrap`."""
