"""Pulumi program of the `gcp-region` stack (docs/stacks/gcp-region.md).

The logic lives in infra/programs/gcp_region.py so tests can run it under mocks.
"""

from pathlib import Path

from infra.programs.gcp_region import main

main(Path(__file__).resolve().parent)
