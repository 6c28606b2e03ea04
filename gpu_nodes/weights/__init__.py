"""Weight delivery: manifests of content-addressed chunks, the node agent and the cluster cache.

Flow: the control plane mirrors a model's weights (``control_plane.weights_mirror``) into the
blob store as ``weights/chunks/<sha256>`` plus ``weights/manifests/<id>.json``; an origin HTTP
server (``gpu_nodes.weights.origin``) serves them; an optional cluster cache
(``gpu_nodes.weights.cluster_cache``) sits in front; the node agent
(``gpu_nodes.weights.agent.ensure_weights``) assembles files from a node-local chunk cache.
"""
