"""Stack programs: each ``stacks/<name>/__main__.py`` calls ``main()`` of one module here.

Every module has a pydantic config model (read from ``pulumi.Config``) and a
``build(config) -> dict`` that instantiates the components and returns the stack outputs,
so tests can run a program under mocks without the Pulumi CLI.
"""
