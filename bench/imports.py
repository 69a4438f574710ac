"""The floor of `imgcls run`'s start-up: importing what it runs on.

`python -m bench.imports`, timed as a command by bench.whole_pipeline.
"""
import tensorflow  # noqa: F401
import tensorflow_model_analysis  # noqa: F401
from tfx import v1  # noqa: F401
