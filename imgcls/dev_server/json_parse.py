"""Request bodies parsed as TF Serving's rapidjson parses them.

TF Serving's `ParseJson` (util/json_tensor.cc) parses with
kParseIterativeFlag | kParseNanAndInfFlag | kParseStopWhenDoneFlag:
- parsing stops after the first complete value, so trailing bytes are
  ignored, not "Extra data";
- nesting is not limited by a call stack (json_tensor_test.cc,
  DeeplyNestedWellFormed: 500,000 levels);
- NaN and Infinity are numbers;
- errors read "JSON Parse error: <rapidjson's English text> at offset: N".
Python's json module recurses, so a document too deep for it is parsed again
by a small iterative parser. Error texts and values shown in messages follow
rapidjson's (GetParseError_En, PrettyWriter with single-line arrays).
"""
import json
import re
from typing import Any, List, Tuple

from imgcls.clients.status import ServingError, invalid_argument

_INVALID_VALUE = 'Invalid value.'
_MISSING_NAME = 'Missing a name for object member.'
_MISSING_COLON = 'Missing a colon after a name of object member.'
_MISSING_OBJECT_COMMA = "Missing a comma or '}' after an object member."
_MISSING_ARRAY_COMMA = "Missing a comma or ']' after an array element."
# Python's json messages, by their start, as rapidjson says them.
_RAPIDJSON_TEXT = (
    ('Expecting value', _INVALID_VALUE),
    ('Expecting property name', _MISSING_NAME),
    ("Expecting ':'", _MISSING_COLON),
    ('Unterminated string', 'Missing a closing quotation mark in string.'),
    ('Invalid \\escape', 'Invalid escape character in string.'),
    ('Invalid \\uXXXX', 'Incorrect hex digit after \\u escape in string.'),
    ('Invalid control character', 'Invalid encoding in string.'),
)
_DECODER = json.JSONDecoder()
_WHITESPACE = re.compile(r'[ \t\n\r]*')
# One token of the iterative parser: punctuation, a string, a number or a
# literal, after optional whitespace.
_TOKEN = re.compile(
    r'[ \t\n\r]*(?:([\[\]{},:])|("(?:[^"\\\x00-\x1f]|\\.)*")|'
    r'(-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)|'
    r'(true|false|null|NaN|-?Infinity))')
_LITERALS = {'true': True, 'false': False, 'null': None}
_STRING_OR_BRACKET = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_DEBUG_STRING_BYTES = 256  # kMaxJsonDebugStringBytes


def parse(body: bytes) -> Any:
  """The first JSON value of `body`; bytes after it are ignored."""
  if not body:
    raise invalid_argument('JSON Parse error: The document is empty')
  # surrogateescape keeps bytes that are not UTF-8 as they came, as rapidjson
  # (which does not validate encodings here) does.
  text = body.decode('utf-8', errors='surrogateescape')
  start = _WHITESPACE.match(text).end()
  if start == len(text):
    raise _parse_error('The document is empty.', text, start)
  try:
    return _DECODER.raw_decode(text, start)[0]
  except json.JSONDecodeError as e:
    raise _parse_error(_rapidjson_text(e, text), text, e.pos) from None
  except RecursionError:
    return _parse_iteratively(text, start)


def _parse_error(message: str, text: str, position: int) -> ServingError:
  offset = len(text[:position].encode('utf-8', errors='surrogateescape'))
  return invalid_argument(f'JSON Parse error: {message} at offset: {offset}')


def _rapidjson_text(error: json.JSONDecodeError, text: str) -> str:
  if error.msg.startswith("Expecting ','"):
    return (_MISSING_OBJECT_COMMA if _innermost_container(text, error.pos)
            == '{' else _MISSING_ARRAY_COMMA)
  for python_start, rapidjson_text in _RAPIDJSON_TEXT:
    if error.msg.startswith(python_start):
      return rapidjson_text
  return 'Unspecific syntax error.'


def _innermost_container(text: str, position: int) -> str:
  """'{' or '[': the container still open at `position`."""
  open_brackets: List[str] = []
  for match in _STRING_OR_BRACKET.finditer(text, 0, position):
    token = match.group()
    if token in '[{':
      open_brackets.append(token)
    elif token in ']}' and open_brackets:
      open_brackets.pop()
  return open_brackets[-1] if open_brackets else '['


def _parse_iteratively(text: str, position: int) -> Any:
  """A parse with an explicit stack, for documents too deep to recurse."""
  # Each open container: [value, pending key (objects), expecting a comma].
  stack: List[list] = []
  while True:
    match = _TOKEN.match(text, position)
    if match is None:
      raise _parse_error(_INVALID_VALUE, text, position)
    position = match.end()
    punctuation = match.group(1)
    if punctuation in ('[', '{'):
      stack.append([[] if punctuation == '[' else {}, None, False])
      continue
    if punctuation in (']', '}'):
      if not stack or isinstance(stack[-1][0], list) != (punctuation == ']'):
        raise _parse_error(_INVALID_VALUE, text, match.start(1))
      value = stack.pop()[0]
    elif punctuation in (',', ':'):
      continue  # separators: only brackets are checked on this rare path
    else:
      value = _scalar_token(match)
    if not stack:
      return value
    _add_to_container(stack[-1], value)


def _scalar_token(match) -> Any:
  string, number, literal = match.group(2, 3, 4)
  if string is not None:
    return json.loads(string)
  if number is not None:
    return json.loads(number)
  return _LITERALS[literal] if literal in _LITERALS else float(literal)


def _add_to_container(container: list, value) -> None:
  target = container[0]
  if isinstance(target, list):
    target.append(value)
  elif container[1] is None:
    container[1] = value  # a key
  else:
    target[container[1]] = value
    container[1] = None


def debug_string(value: Any) -> str:
  """`value` as TF Serving's JsonValueToDebugString shows it: rapidjson's
  PrettyWriter with single-line arrays, cut off after 256 bytes."""
  out: List[str] = []
  size = 0
  for token in _pretty_tokens(value):
    if size >= _DEBUG_STRING_BYTES:
      break
    out.append(token)
    size += len(token)
  return ''.join(out)


def _pretty_tokens(value: Any):
  """The tokens of a pretty print, depth first without recursion."""
  # Work items: ('value', v, indent) or ('text', s).
  work: List[Tuple] = [('value', value, 0)]
  while work:
    item = work.pop()
    if item[0] == 'text':
      yield item[1]
      continue
    _, current, indent = item
    if isinstance(current, list):
      work.extend(reversed(_array_items(current, indent)))
    elif isinstance(current, dict):
      work.extend(reversed(_object_items(current, indent)))
    else:
      yield _scalar_text(current)


def _array_items(array: list, indent: int) -> list:
  items = [('text', '[')]
  for index, element in enumerate(array):
    if index:
      items.append(('text', ', '))
    items.append(('value', element, indent))
  return items + [('text', ']')]


def _object_items(obj: dict, indent: int) -> list:
  if not obj:
    return [('text', '{}')]
  inner = ' ' * (indent + 4)
  items = [('text', '{\n')]
  for index, (key, element) in enumerate(obj.items()):
    if index:
      items.append(('text', ',\n'))
    items.append(('text', f'{inner}{json.dumps(key)}: '))
    items.append(('value', element, indent + 4))
  return items + [('text', '\n' + ' ' * indent + '}')]


def _scalar_text(value) -> str:
  if isinstance(value, float) and value != value:
    return 'NaN'
  if isinstance(value, float) and value in (float('inf'), float('-inf')):
    return 'Infinity' if value > 0 else '-Infinity'
  return json.dumps(value)
