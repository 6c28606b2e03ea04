"""The contracts every plane imports and no plane owns.

- ``routing``: the routing table the control plane serves and the gateways parse.
- ``replica_env``: the ``PLINTH_*`` variables a replica gets (``ReplicaEnv``, ``WeightsDelivery``).
- ``weights_manifest``, ``chunking``: the weight manifest, its chunk references and how files
  are cut into chunks (the mirror writes them, the node agent and cluster cache read them).
- ``http_ranges``: the Range / digest rules of the weight origin's HTTP protocol, shared by the
  control plane's origin and the cluster cache.
- ``async_work``: the headers by which async calls take only slots sync traffic leaves free.
- ``exceptions``: errors raised on both sides of these contracts.

The package spec (config.yaml schema, archives) is the other shared contract: ``plinth.spec``.
Nothing here imports ``control_plane``, ``gpu_nodes``, ``lambdas``, ``infra`` or ``plinth.cli``
(import-linter enforces it).
"""
