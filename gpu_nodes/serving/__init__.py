"""What every GPU-node server process shares (the gateway, model servers, the OpenAI server):
log setup (``logs``) and ``X-Request-Id`` handling (``request_id``)."""
