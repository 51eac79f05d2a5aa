"""`python -m edge_app` runs the camera application."""
import sys

from .cli import main

sys.exit(main())
