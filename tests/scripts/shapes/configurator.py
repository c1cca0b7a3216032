"""Overrides this folder's scripts' globals from `--key=value` arguments, the way
nanoGPT's configurator does: run with exec() in the script's globals."""
import sys
from ast import literal_eval

for arg in sys.argv[1:]:
    key, _, value = arg.lstrip("-").partition("=")
    assert key in globals(), f"unknown config key: {key}"
    try:
        value = literal_eval(value)
    except (SyntaxError, ValueError):
        pass
    globals()[key] = value
