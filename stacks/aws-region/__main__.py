"""Pulumi program of the `aws-region` stack (docs/stacks/aws-region.md).

The logic lives in infra/programs/aws_region.py so tests can run it under mocks.
"""

from pathlib import Path

from infra.programs.aws_region import main

main(Path(__file__).resolve().parent)
