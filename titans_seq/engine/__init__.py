"""Training engine: checkpoints, trainer, logging, evaluation and the task registry."""
