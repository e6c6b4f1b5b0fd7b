import sys

from ihe_engine.bench.cli import main

sys.exit(main(sys.argv[1:]))
