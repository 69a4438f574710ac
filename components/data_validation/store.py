"""The schema directory: what data validation keeps from one run to the next.

    <schema dir>/schema.pbtxt              the curated schema; edit it freely
    <schema dir>/accepted_statistics.pb    the train statistics last accepted

A stable directory instead of a Resolver node, for the same reason as
ServingBaseline: self-hosted Kubeflow Pipelines rejects Resolvers, and the
statistics that matter are those of the data last let through, whichever
run that was. Both files are replaced atomically (written aside, renamed),
so a run killed mid-write leaves the old file or the new one.
"""
import hashlib
import os
from typing import Optional

from google.protobuf import text_format
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from imgcls.contract import files, names
from imgcls.contract.errors import UserError


def schema_path(schema_dir: str) -> str:
  return os.path.join(schema_dir, names.SCHEMA_FILE)


def statistics_path(schema_dir: str) -> str:
  return os.path.join(schema_dir, names.ACCEPTED_STATISTICS_FILE)


def read_schema(schema_dir: str) -> Optional[schema_pb2.Schema]:
  """The kept schema, None before the first run; a UserError naming the file
  and the line when it does not parse (it is edited by hand)."""
  path = schema_path(schema_dir)
  if not tf.io.gfile.exists(path):
    return None
  try:
    return text_format.Parse(_read(path).decode('utf-8'), schema_pb2.Schema())
  except (text_format.ParseError, UnicodeDecodeError) as e:
    raise UserError(f'{path}: not a valid schema (a tensorflow_metadata '
                    f'Schema in text format): {e}. Fix it, or delete it to '
                    'infer a new one from the next run\'s data') from None


def write_schema(schema_dir: str, schema: schema_pb2.Schema) -> None:
  files.replace_file(schema_path(schema_dir),
                     text_format.MessageToString(schema).encode())


def read_accepted(schema_dir: str
                 ) -> Optional[statistics_pb2.DatasetFeatureStatisticsList]:
  path = statistics_path(schema_dir)
  return read_statistics(path) if tf.io.gfile.exists(path) else None


def read_statistics(path: str
                   ) -> statistics_pb2.DatasetFeatureStatisticsList:
  """A binary DatasetFeatureStatisticsList, as StatisticsGen writes them."""
  return statistics_pb2.DatasetFeatureStatisticsList.FromString(_read(path))


def write_accepted(schema_dir: str,
                   statistics: statistics_pb2.DatasetFeatureStatisticsList
                  ) -> None:
  files.replace_file(statistics_path(schema_dir),
                     statistics.SerializeToString())


def state_hint(schema_dir: str) -> str:
  """A digest of both files, '' when neither exists: passed to the
  components as a parameter, so that LocalDagRunner's cache misses when a
  person edits the schema or a run accepts new statistics."""
  digest = hashlib.sha256()
  found = False
  for path in (schema_path(schema_dir), statistics_path(schema_dir)):
    if tf.io.gfile.exists(path):
      digest.update(_read(path))
      found = True
    digest.update(b'\0')
  return digest.hexdigest()[:16] if found else ''


def _read(path: str) -> bytes:
  with tf.io.gfile.GFile(path, 'rb') as f:
    return f.read()


