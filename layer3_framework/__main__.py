"""`python -m layer3_framework` runs this layer's deliverables (see layer0_math.lab.cli)."""

from layer0_math.lab import cli
from layer3_framework import deliverables

raise SystemExit(cli(deliverables))
