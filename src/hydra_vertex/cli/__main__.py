import sys

from hydra_vertex.cli import main

sys.exit(main())
