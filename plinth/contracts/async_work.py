"""How async work asks a replica for a slot that sync traffic leaves free ("sync first").

The async worker marks its predict calls with :data:`ASYNC_WORK_HEADER`. A replica takes a
marked call only when one of its ``predict_concurrency`` slots is free and no sync call is
waiting for one; otherwise it answers ``429`` at once, with ``Retry-After`` and
:data:`REPLICA_BUSY_HEADER`, instead of queueing the call. Unmarked (sync) calls queue for a
slot as before. The gateway passes both headers through unchanged.

The busy header is what tells the worker "no free slot: put the request back in the queue,
no attempt spent" apart from a 429 the model itself answered (that one is an attempt, retried
under the request's ``inference_retry_config``).
"""

from __future__ import annotations

ASYNC_WORK_HEADER = "x-plinth-async-work"
REPLICA_BUSY_HEADER = "x-plinth-replica-busy"
# Seconds a busy replica suggests in Retry-After (a slot frees when one predict ends).
BUSY_RETRY_AFTER_S = 1
