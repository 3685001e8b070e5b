import sys

from tf1infer.cli.commands import main

sys.exit(main())
