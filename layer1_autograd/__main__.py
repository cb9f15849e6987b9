"""`python -m layer1_autograd` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math.lab import cli
from layer1_autograd import deliverables

raise SystemExit(cli(deliverables))
