"""`python -m layer2_primitives` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math.lab import cli
from layer2_primitives import deliverables

raise SystemExit(cli(deliverables))
