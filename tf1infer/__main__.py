"""``python -m tf1infer``: the ``tf1infer`` command."""

import sys

from tf1infer.cli import main

sys.exit(main())
