"""The TFX pipeline: one definition (pipeline.py), two runners (local.py for
LocalDagRunner, kubeflow.py for Kubeflow Pipelines)."""
