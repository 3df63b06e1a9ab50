"""Training: losses, the trainer, distributed set-up and checkpoints."""
