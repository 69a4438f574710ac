"""Model classes that break the serving contract, for the contract check."""
import tensorflow as tf

from imgcls.trainer.models import LenetModel


class UnnormalizedModel(LenetModel):
  """Serves logits under the name `probabilities`: they do not sum to 1."""

  def _predict_pixels(self, pixels):
    outputs = super()._predict_pixels(pixels)
    outputs['probabilities'] = outputs['logits'] + tf.constant(5.0)
    return outputs
