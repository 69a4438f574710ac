"""Image classifier models (trainer.models), their training input pipelines,
the TFX Trainer module (trainer.task) and the standalone train/evaluate
commands."""
