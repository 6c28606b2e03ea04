"""Weight delivery on the node: the node agent and the cluster cache.

Flow: the control plane mirrors a model's weights (``control_plane.weights.mirror``) into the
blob store as ``weights/chunks/<sha256>`` plus ``weights/manifests/<id>.json`` (the format is
``plinth.contracts.weights_manifest``); its origin (``control_plane.weights.origin``) serves them
over HTTP; an optional cluster cache (``gpu_nodes.weights.cluster_cache``) sits in front; the node
agent (``gpu_nodes.weights.agent.ensure_weights``, inside each replica) plans what the node cache
lacks (``plan``), fills it (``fill``, with ``assembly`` and ``in_place``) and publishes the
files under the mount (``publish``).
"""
