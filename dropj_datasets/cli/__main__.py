import sys

from dropj_datasets.cli import main

sys.exit(main())
