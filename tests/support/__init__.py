"""Test support shared by every test directory: loopback servers, free ports, cloud emulators.

Import as ``from tests.support.servers import free_port, UvicornThread``; the repository root is
on ``sys.path`` (``python -m pytest`` from the root, or ``pythonpath`` in the pytest config).
"""
