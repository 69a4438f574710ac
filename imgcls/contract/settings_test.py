"""A declared setting's flag, reader, JSON form and check."""
import argparse
import dataclasses
import json
from typing import Any, Dict, Tuple

import pytest

from imgcls.contract import settings
from imgcls.contract.errors import UserError


@settings.settings_class
class Inner:
  depth: int = settings.setting(3, 'how deep', check=settings.in_range(1))


@settings.settings_class
class Example:
  count: int = settings.setting(5, 'how many', check=settings.in_range(
      1, 10, why='ten at most'))
  share: float = settings.setting(0.25, 'a share',
                                  check=settings.in_range(0, below=1))
  mode: str = settings.setting('fast', 'how', choices=('fast', 'slow'))
  shape: Tuple[int, int] = settings.setting(
      (2, 3), 'a shape', parse=lambda t: tuple(map(int, t.split(','))),
      shown_default='2,3 or the data\'s')
  options: Dict[str, Any] = settings.setting(
      default_factory=dict, help='KEY=VALUE', flag='--option', repeated=True,
      parse=lambda t: tuple(t.split('=')), convert=dict)
  strict: bool = settings.setting(False, 'be strict')
  lenient: bool = settings.setting(True, 'do not be lenient',
                                   flag='--no-lenient')
  path: str = settings.setting('', 'a path', convert=settings.absolute_path)
  hidden: int = settings.setting(7, 'no flag', flag=None,
                                 check=settings.in_range(0))
  inner: Inner = settings.group(Inner)
  plain: str = 'not a setting'


def _parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser()
  settings.add_flags(parser, Example)
  return parser


def _parse(*argv: str) -> Example:
  return settings.from_args(Example, _parser().parse_args(argv))


def test_without_flags_every_setting_keeps_its_default():
  assert _parse() == Example()


def test_each_flag_sets_its_setting():
  assert _parse('--count', '7', '--share', '0.5', '--mode', 'slow',
                '--shape', '4,5', '--option', 'a=b', '--option', 'c=d',
                '--strict', '--no-lenient', '--path', 'here', '--depth', '9'
               ) == Example(count=7, share=0.5, mode='slow', shape=(4, 5),
                            options={'a': 'b', 'c': 'd'}, strict=True,
                            lenient=False, path=settings.absolute_path('here'),
                            inner=Inner(depth=9))


def test_a_setting_without_a_flag_has_none():
  flags = {o for a in _parser()._actions for o in a.option_strings}
  assert '--hidden' not in flags and '--plain' not in flags


def test_help_shows_each_default():
  text = _parser().format_help()
  for shown in ('how many; default 5', 'a share; default 0.25',
                'how; default fast', "2,3 or the data's",
                'how deep; default 3'):
    assert shown in ' '.join(text.split()), shown


def test_given_values_replace_the_flags():
  args = _parser().parse_args(['--count', '2'])
  assert settings.from_args(Example, args, count=3, plain='p') == Example(
      count=3, plain='p')


def test_prefixed_flags_are_read_back_with_the_prefix():
  parser = argparse.ArgumentParser()
  settings.add_flags(parser, Example, names=('count',), prefix='other',
                     help_prefix='for the other: ')
  args = parser.parse_args(['--other-count', '4'])
  assert 'for the other: how many' in parser.format_help()
  assert settings.from_args(Example, args, prefix='other') == Example(count=4)


@pytest.mark.parametrize('argv, message', [
    (['--count', '0'], '--count 0: must be at least 1 and at most 10 (ten at '
     'most)'),
    (['--share', '1'], '--share 1: must be at least 0 and below 1'),
    (['--depth', '0'], '--depth 0: must be at least 1'),
])
def test_a_refused_value_is_named_by_its_flag(argv, message):
  with pytest.raises(UserError) as raised:
    _parse(*argv)
  assert str(raised.value) == message


def test_a_value_read_in_an_executor_is_checked_too():
  with pytest.raises(UserError, match='^--mode quick: must be one of fast, '
                     'slow$'):
    settings.from_json(Example, {'mode': 'quick'})
  with pytest.raises(UserError, match='^hidden -1: must be at least 0$'):
    settings.from_json(Example, {'hidden': -1})


def test_json_round_trip_keeps_every_setting_and_its_type():
  example = Example(count=2, share=0.5, mode='slow', shape=(4, 5),
                    options={'a': None}, strict=True, lenient=False,
                    path='/p', hidden=8)
  text = json.dumps(settings.to_json(example))
  assert settings.from_json(Example, json.loads(text)) == dataclasses.replace(
      example, inner=Inner())  # a group travels on its own


def test_json_numbers_as_floats_come_back_as_declared():
  """What a protobuf Struct gives back."""
  read = settings.from_json(Example, {'count': 2.0, 'shape': [4.0, 5.0],
                                      'unknown': 1})
  assert (read.count, read.shape) == (2, (4, 5))
  assert isinstance(read.count, int)


def test_every_setting_includes_the_groups_by_path():
  paths = [path for path, _, _ in settings.every_setting(Example)]
  assert paths[-1] == ('inner', 'depth') and ('count',) in paths
  assert ('plain',) not in paths and ('inner',) not in paths
