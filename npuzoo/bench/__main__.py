import sys

from npuzoo.bench.runner import main

sys.exit(main())
