"""The one exception type for problems a user can fix.

The CLI prints its message without a traceback and exits non-zero; anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
  """Bad input or an unreachable service: the message names what is at fault."""
