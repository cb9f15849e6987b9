"""`python -m layer4_architectures` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math.lab import cli
from layer4_architectures import deliverables

raise SystemExit(cli(deliverables))
