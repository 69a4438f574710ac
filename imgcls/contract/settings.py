"""Settings, each declared once: a dataclass field made by `setting()`.

From the one declaration (the field's type, default, help and check) come:
- its flag (`add_flags`): `--<name>` with its type, choices and default,
  the default shown in its help, which is the setting's documentation
  (`imgcls <command> --help`);
- its value from the parsed flags (`from_args`);
- its JSON form, which a TFX `custom_config` or execution parameter carries
  into the executor, and the generic reader there (`to_json`, `from_json`);
- its check, which a class made by `settings_class` runs whenever an
  instance is made: by the CLI, by retrain, and by the executor reading its
  execution properties in its pod.

A field made by `group(cls)` holds another class of settings: its flags are
added and read with its holder's.

No imports beyond the standard library: the CLI builds its flags from these
declarations, and `imgcls --help` must not wait for TensorFlow.
"""
import argparse
import dataclasses
import os
import typing
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

from imgcls.contract.errors import UserError

_SETTING = 'imgcls.setting'
_GROUP = 'imgcls.settings-group'

# A check: the problem with a value ('must be at least 1'), or None.
Check = Callable[[Any], Optional[str]]


@dataclasses.dataclass(frozen=True)
class Setting:
  """What a field's declaration says beyond its type and default."""
  help: str
  check: Optional[Check] = None
  choices: Optional[Sequence[Any]] = None
  # '--<name>' unless given; None: no flag (the setting is still carried to
  # the executor and checked).
  flag: Optional[str] = ''
  aliases: Tuple[str, ...] = ()
  metavar: Optional[str] = None
  # Text -> value (argparse's `type`); the field's type unless given.
  parse: Optional[Callable[[str], Any]] = None
  # The flag may be repeated; `convert` makes the field's value of the list.
  repeated: bool = False
  # The flag's value -> the field's (e.g. a path made absolute).
  convert: Optional[Callable[[Any], Any]] = None
  # The default in words, where the field's default is worked out when a
  # config is made (e.g. from the params file). Without the flag, the field
  # then keeps its own default.
  shown_default: Optional[str] = None


def settings_class(cls: type) -> type:
  """A frozen dataclass whose settings are checked (`check`) whenever an
  instance is made, before its own `__post_init__`, if any, runs."""
  own_post_init = getattr(cls, '__post_init__', None)

  def __post_init__(self):
    check(self)
    if own_post_init:
      own_post_init(self)
  cls.__post_init__ = __post_init__
  return dataclasses.dataclass(frozen=True)(cls)


def setting(default: Any = dataclasses.MISSING, help: str = '', *,
            default_factory: Any = dataclasses.MISSING,
            **declaration: Any) -> Any:
  """A dataclass field declaring a setting; `declaration`: Setting's."""
  return dataclasses.field(
      default=default, default_factory=default_factory,
      metadata={_SETTING: Setting(help=help, **declaration)})


def group(cls: type) -> Any:
  """A dataclass field holding a class of settings, defaulting to its own."""
  return dataclasses.field(default_factory=cls, metadata={_GROUP: cls})


def in_range(low: Any = None, high: Any = None, *, above: Any = None,
             below: Any = None, why: str = '') -> Check:
  """A check of bounds, each inclusive (low, high) or not (above, below)."""
  bounds = [(low, lambda v, b: v >= b, 'at least'),
            (above, lambda v, b: v > b, 'above'),
            (high, lambda v, b: v <= b, 'at most'),
            (below, lambda v, b: v < b, 'below')]
  bounds = [(b, holds, words) for b, holds, words in bounds if b is not None]
  problem = 'must be ' + ' and '.join(f'{words} {_shown(b)}'
                                      for b, _, words in bounds)
  problem += f' ({why})' if why else ''

  def check(value):
    return None if all(holds(value, b) for b, holds, _ in bounds) else problem
  return check


def absolute_path(path: str) -> str:
  """A flag's path made absolute (`convert=`), where the steps run elsewhere
  than the command's directory."""
  return os.path.abspath(path) if path else ''


def fields(cls: type) -> Iterator[Tuple[dataclasses.Field, Setting]]:
  """The class's own settings (not its groups'), in declaration order."""
  for field in dataclasses.fields(cls):
    if _SETTING in field.metadata:
      yield field, field.metadata[_SETTING]


def groups(cls: type) -> Iterator[Tuple[dataclasses.Field, type]]:
  for field in dataclasses.fields(cls):
    if _GROUP in field.metadata:
      yield field, field.metadata[_GROUP]


def every_setting(
    cls: type, path: Tuple[str, ...] = ()
) -> Iterator[Tuple[Tuple[str, ...], dataclasses.Field, Setting]]:
  """Every setting of the class and of its groups, with its path of field
  names (('training', 'epochs'))."""
  for field, declared in fields(cls):
    yield (*path, field.name), field, declared
  for field, group_cls in groups(cls):
    yield from every_setting(group_cls, (*path, field.name))


def flag(field: dataclasses.Field, declared: Setting) -> Optional[str]:
  """The setting's flag, or None where it has none."""
  if declared.flag is None:
    return None
  return declared.flag or '--' + field.name.replace('_', '-')


def check(config: Any) -> None:
  """Raises a UserError naming the flag (or field) of the first setting
  whose value its declaration refuses."""
  for field, declared in fields(type(config)):
    value = getattr(config, field.name)
    if declared.choices is not None and value not in declared.choices:
      problem = 'must be one of ' + ', '.join(map(str, declared.choices))
    else:
      problem = declared.check(value) if declared.check else None
    if problem:
      raise UserError(f'{flag(field, declared) or field.name} '
                      f'{_shown(value)}: {problem}')


def add_flags(parser: argparse.ArgumentParser, cls: type, *,
              names: Optional[Sequence[str]] = None, prefix: str = '',
              help_prefix: str = '') -> None:
  """The flags of the class's settings and of its groups', in declaration
  order.

  `names`: only these settings (none of the groups'). `prefix`: flags
  `--<prefix>-<name>`, read back with the same prefix, for a command that
  takes one class's settings for two uses (retrain's --kfp-image).
  """
  hints = typing.get_type_hints(cls)
  for field in dataclasses.fields(cls):
    if _GROUP in field.metadata and names is None:
      add_flags(parser, field.metadata[_GROUP])
    declared = field.metadata.get(_SETTING)
    if declared is None or (names is not None and field.name not in names):
      continue
    option = flag(field, declared)
    if option is not None:
      parser.add_argument(
          f'--{prefix}-{option[2:]}' if prefix else option, *declared.aliases,
          dest=_dest(field, prefix),
          help=(help_prefix + _help(field, declared)).replace('%', '%%'),
          **_argparse_kwargs(field, declared, hints[field.name]))


def from_args(cls: type, args: argparse.Namespace, *,
              names: Optional[Sequence[str]] = None, prefix: str = '',
              **given: Any) -> Any:
  """The config the parsed flags give (those `add_flags` added with the
  same `names` and `prefix`); `given`: the values of the fields that have no
  flag of this form, or that the caller works out."""
  values = {}
  for field, declared in fields(cls):
    dest = _dest(field, prefix)
    if (field.name in given or not hasattr(args, dest) or
        (names is not None and field.name not in names)):
      continue
    value = getattr(args, dest)
    if value is None and _absent_is_none(declared):
      continue  # the field keeps its own default
    values[field.name] = (declared.convert(value) if declared.convert
                          else value)
  for field, group_cls in groups(cls):
    if field.name not in given and names is None:
      values[field.name] = from_args(group_cls, args)
  return cls(**values, **given)


def to_json(config: Any) -> Dict[str, Any]:
  """The settings as JSON values (tuples as lists), for an executor."""
  return {field.name: _jsonable(getattr(config, field.name))
          for field, _ in fields(type(config))}


def from_json(cls: type, values: Optional[Dict[str, Any]]) -> Any:
  """The config that `to_json` carried: every setting the values hold,
  typed as declared (a protobuf Struct keeps every number as a float); the
  others at their defaults, names that are no setting ignored."""
  hints = typing.get_type_hints(cls)
  return cls(**{field.name: _typed(hints[field.name], values[field.name])
                for field, _ in fields(cls) if field.name in (values or {})})


def _dest(field: dataclasses.Field, prefix: str) -> str:
  return f'{prefix}_{field.name}' if prefix else field.name


def _parse(hint: Any) -> Callable[[str], Any]:
  """argparse's `type` of a field (of each value, where repeated)."""
  return hint if hint in (int, float) else str


def _absent_is_none(declared: Setting) -> bool:
  """Whether the flag's value is None when it is not given: a default shown
  in words is worked out when a config is made, and a repeated flag's list
  starts empty."""
  return declared.shown_default is not None or declared.repeated


def _argparse_kwargs(field: dataclasses.Field, declared: Setting,
                     hint: Any) -> Dict[str, Any]:
  if hint is bool:
    return dict(action='store_false' if field.default else 'store_true')
  return dict(
      action='append' if declared.repeated else 'store',
      type=declared.parse or _parse(hint), choices=declared.choices,
      metavar=declared.metavar,
      default=None if _absent_is_none(declared) else _default(field))


def _default(field: dataclasses.Field) -> Any:
  if field.default is not dataclasses.MISSING:
    return field.default
  return field.default_factory()


def _help(field: dataclasses.Field, declared: Setting) -> str:
  if declared.shown_default is not None:
    shown = declared.shown_default
  elif declared.repeated or isinstance(field.default, bool):
    return declared.help
  else:
    shown = _shown(_default(field))
  return f'{declared.help}; default {shown}' if declared.help else (
      f'default {shown}')


def _shown(value: Any) -> str:
  if isinstance(value, bool):
    return str(value)
  if isinstance(value, int):
    return f'{value:,}'
  if isinstance(value, float):
    return f'{value:g}'
  return str(value)


def _jsonable(value: Any) -> Any:
  return list(value) if isinstance(value, tuple) else value


def _typed(hint: Any, value: Any) -> Any:
  """A JSON value as the field's type."""
  if value is None or hint is Any:
    return value
  if hint in (int, float, str, bool):
    return hint(value)
  if typing.get_origin(hint) is tuple:
    types = typing.get_args(hint)
    if len(types) == 2 and types[1] is Ellipsis:
      types = (types[0],) * len(value)
    return tuple(_typed(t, v) for t, v in zip(types, value))
  if typing.get_origin(hint) is dict:
    return dict(value)
  return value
