"""JSON objects read back into dataclasses, checked against their type hints.

The one validator for the project's JSON records (the dataset facts, a
version's provenance): a record that does not fit is an error naming the file
and the field, never a KeyError or a half-built object further on.
"""
import dataclasses
import enum
import typing
from typing import Any, Dict, Type, TypeVar

T = TypeVar('T')


class RecordError(ValueError):
  """A JSON value that does not fit its dataclass; the message names where."""


def from_json(cls: Type[T], raw: Any, where: str,
              ignore_unknown: bool = True) -> T:
  """cls built from raw's values, each of its declared type.

  Fields with a default may be absent (files of an earlier release hold
  fewer); unknown keys are ignored (a later release's may hold more) unless
  `ignore_unknown` is false.
  """
  return cls(**fields_of(cls, raw, where, required=False,
                         ignore_unknown=ignore_unknown))


def fields_of(cls, raw: Any, where: str, required: bool,
              ignore_unknown: bool = False) -> Dict[str, Any]:
  """raw's values for the dataclass cls's fields, each of its declared type.

  With `required`, every field must be present; otherwise only those without
  a default.
  """
  if not isinstance(raw, dict):
    raise RecordError(f'{where}: expected an object, got {json_type(raw)}')
  hints = typing.get_type_hints(cls)
  unknown = sorted(set(raw) - set(hints))
  if unknown and not ignore_unknown:
    raise RecordError(f'{where}: unknown keys {unknown}')
  for field in dataclasses.fields(cls):
    has_default = (field.default is not dataclasses.MISSING or
                   field.default_factory is not dataclasses.MISSING)
    if field.name not in raw:
      if required or not has_default:
        raise RecordError(f'{where}: missing {field.name!r}')
      continue
    if not has_type(raw[field.name], hints[field.name]):
      raise RecordError(
          f'{where}.{field.name}: expected {type_name(hints[field.name])}, '
          f'got {json_type(raw[field.name])}')
  return {k: v for k, v in raw.items() if k in hints}


def has_type(value: Any, hint) -> bool:
  """isinstance for the JSON shapes of a type hint: a float field takes an
  int, an int field no bool, a list or dict is checked item by item."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if hint is Any:
    return True
  if origin is typing.Union:
    return any(has_type(value, a) for a in args)
  if origin is dict:
    return isinstance(value, dict) and all(
        has_type(k, args[0]) and has_type(v, args[1])
        for k, v in value.items())
  if origin in (list, tuple):
    # Records in a list are left to their own reader, which names the index.
    item = args[0] if args else Any
    return isinstance(value, list) and (dataclasses.is_dataclass(item) or all(
        has_type(v, item) for v in value))
  if hint is type(None):
    return value is None
  if hint is int:
    return isinstance(value, int) and not isinstance(value, bool)
  if hint is float:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
  if isinstance(hint, type) and issubclass(hint, enum.StrEnum):
    return isinstance(value, str)
  if dataclasses.is_dataclass(hint):  # a nested record: its own reader checks
    return isinstance(value, dict)
  return isinstance(value, hint)


def type_name(hint) -> str:
  if isinstance(hint, type):
    return hint.__name__
  return str(hint).replace('typing.', '')


def json_type(value: Any) -> str:
  """The JSON name of a parsed value's type, for messages."""
  return {dict: 'an object', list: 'a list', str: 'a string', bool: 'a boolean',
          int: 'a number', float: 'a number', type(None): 'null'}.get(
              type(value), type(value).__name__)
