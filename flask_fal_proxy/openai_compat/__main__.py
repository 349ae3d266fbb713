"""``python -m flask_fal_proxy.openai_compat``: see :mod:`.server`."""

import sys

from .server import main

if __name__ == "__main__":
    sys.exit(main())
