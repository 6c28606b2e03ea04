"""Pulumi ComponentResources for Plinth (``plinth:<module>:<Type>``) and the stack programs.

Importing any module here creates nothing; resources exist only once a component is
instantiated inside a Pulumi program (``stacks/*``) or under mocks (``infra.offline``).
"""
