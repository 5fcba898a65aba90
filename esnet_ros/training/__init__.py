"""Training: the training loop, metrics, evaluation."""
