import sys

from tf1infer.bench import main

sys.exit(main())
