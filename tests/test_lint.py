"""The linter, as part of the suite: a finding fails `make test`.

The rules are in ruff.toml: pycodestyle's errors and warnings, pyflakes
(unused names among them) and import order.
"""
import os
import subprocess
import sys

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_ruff_finds_nothing():
  result = subprocess.run([sys.executable, '-m', 'ruff', 'check', _REPO],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
