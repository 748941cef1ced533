"""arvid.kernels: fused Triton attention kernels and their pure-PyTorch references (in progress)."""
