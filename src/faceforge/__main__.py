import sys

from faceforge.cli.main import main

sys.exit(main())
