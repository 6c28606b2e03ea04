"""Pulumi program of the `aws-control-plane` stack (docs/stacks/aws-control-plane.md).

The logic lives in infra/programs/aws_control_plane.py so tests can run it under mocks.
"""

from pathlib import Path

from infra.programs.aws_control_plane import main

main(Path(__file__).resolve().parent)
