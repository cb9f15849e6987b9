"""`python -m layer5_training` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math.lab import cli
from layer5_training import deliverables

raise SystemExit(cli(deliverables))
