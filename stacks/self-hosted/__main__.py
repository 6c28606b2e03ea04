"""Pulumi program of the `self-hosted` stack (docs/stacks/self-hosted.md).

The logic lives in infra/programs/self_hosted.py so tests can run it under mocks.
"""

from pathlib import Path

from infra.programs.self_hosted import main

main(Path(__file__).resolve().parent)
