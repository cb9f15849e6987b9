"""`python -m layer0_math` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math import deliverables
from layer0_math.lab import cli

raise SystemExit(cli(deliverables))
