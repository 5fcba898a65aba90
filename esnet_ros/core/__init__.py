"""Core: the ESNet model, checkpoints and their metadata, class tables. torch + numpy only."""
