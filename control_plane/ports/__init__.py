"""Ports: the side effects of the control plane, each a small Protocol.

Every port has an embedded default adapter (SQLite, files, local processes) and
cloud adapters that pass the same contract tests (see tests/control_plane/contract/).
"""
