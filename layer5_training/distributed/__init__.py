"""Data-parallel training: DDP, FSDP2, ZeRO-1, gradient accumulation, the communication model."""
