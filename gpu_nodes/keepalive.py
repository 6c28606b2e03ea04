"""Idle keep-alive times of the gateway -> replica hop, chosen as a pair.

A pooled connection must be closed by the client (the gateway) before the server (a replica)
closes it: when the server closes first, a request sent on the connection at that instant dies
with a reset and the caller gets a 502 (seen with uvicorn's default of 5 s, about 5 s after a
replica's last request). So replicas keep idle connections for longer than the gateway pools
them.
"""

REPLICA_KEEP_ALIVE_S = 75
"""How long a replica's server keeps an idle HTTP connection open."""

GATEWAY_POOL_IDLE_S = 30
"""How long the gateway keeps an idle pooled connection to a replica (must be shorter)."""
