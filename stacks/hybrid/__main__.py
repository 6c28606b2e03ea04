"""Pulumi program of the `hybrid` stack (docs/stacks/hybrid.md).

The logic lives in infra/programs/hybrid.py so tests can run it under mocks.
"""

from pathlib import Path

from infra.programs.hybrid import main

main(Path(__file__).resolve().parent)
