import sys

from hub_emulator.cli import main

sys.exit(main())
