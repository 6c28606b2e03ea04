"""What the GPU-node server processes share (the gateway and the model server, which also
fronts the OpenAI app): log setup (``logs``) and ``X-Request-Id`` handling (``request_id``)."""
