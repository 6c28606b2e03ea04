"""AWS Lambda entry points of the serverless control plane (wired by ``infra.control_plane``).

``lambdas.api.handler`` (HTTP API -> Mangum -> FastAPI), ``lambdas.async_worker.handler``
(SQS batches with partial failures), ``lambdas.reconciler.handler`` (scheduled pass).
"""
