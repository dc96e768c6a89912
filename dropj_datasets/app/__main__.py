import sys

from dropj_datasets.app.cli import main

if __name__ == "__main__":  # `dropj record --web` spawns sessions, which import this module again
    sys.exit(main())
