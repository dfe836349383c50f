"""Training: engine, wiring from configs, checkpoints. Requires the ``train`` extra."""
