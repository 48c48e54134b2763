"""The app, for gunicorn (`wsgi:app`) and for every command (`flask --app wsgi ...`)."""

import sys

from receiver import create_app
from receiver.config import ConfigError

try:
    app = create_app()
except ConfigError as e:
    # The operator's to fix, not a bug: one line naming the setting, for every command
    # (`--help` included), instead of a traceback ahead of the message; exit status 2, as
    # for a usage error, which no restart can fix.
    print(f"Error: {e}", file=sys.stderr)
    raise SystemExit(2) from None
