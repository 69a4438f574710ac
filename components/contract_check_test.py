"""Tests for the ContractCheck: the model keeps the serving contract, or the
InfraBlessing says which part it breaks."""
import os

import pytest
from tfx.types import standard_artifacts
from tfx.utils import path_utils

from imgcls.components import contract_check
from imgcls.contract import names
from imgcls.imagedata import tf_examples
from imgcls.trainer import models
from tests import artifacts, broken_models


@pytest.fixture(scope='module')
def examples(tmp_path_factory):
  return artifacts.examples(str(tmp_path_factory.mktemp('examples')),
                            {'test': artifacts.labelled_images(6)})


def _run(model_artifact, examples_artifact, tmp_path):
  blessing = standard_artifacts.InfraBlessing()
  blessing.uri = str(tmp_path / 'blessing')
  contract_check.ContractCheck.EXECUTOR_SPEC.executor_class().Do(
      {'model': [model_artifact], 'examples': [examples_artifact]},
      {'infra_blessing': [blessing]}, {'sample_size': 4})
  return (blessing.get_int_custom_property(names.PROP_BLESSED),
          blessing.get_string_custom_property(names.PROP_REASON))


def test_a_model_that_keeps_the_contract_is_blessed(examples, tmp_path):
  model = artifacts.model(str(tmp_path / 'model'))
  assert _run(model, examples, tmp_path) == (1, names.REASON_PASSED)


def test_probabilities_that_do_not_sum_to_one_are_named(examples, tmp_path):
  model = artifacts.model(
      str(tmp_path / 'model'),
      broken_models.UnnormalizedModel((28, 28, 1), artifacts.CLASS_NAMES))
  blessed, reason = _run(model, examples, tmp_path)
  assert blessed == 0
  assert 'probabilities sum to' in reason


def test_classes_other_than_the_datasets_are_named(examples, tmp_path):
  model = artifacts.model(
      str(tmp_path / 'model'),
      models.build_model('LenetModel', (28, 28, 1), ['a', 'b', 'c']))
  blessed, reason = _run(model, examples, tmp_path)
  assert blessed == 0
  assert "model classes ['a', 'b', 'c'] differ" in reason


def test_a_directory_that_is_no_saved_model_is_named(examples, tmp_path):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / 'empty')
  os.makedirs(path_utils.serving_model_dir(model.uri))
  blessed, reason = _run(model, examples, tmp_path)
  assert blessed == 0
  assert reason.startswith('cannot load')


def test_check_reads_only_sample_size_records(examples):
  batch = next(tf_examples.test_records(examples.uri, 4, 4))
  assert len(batch) == 4
