"""Stub of timm for the torchscale oracle: only `timm.models.layers.drop_path`."""
