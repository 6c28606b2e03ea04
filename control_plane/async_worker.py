"""``python -m control_plane.async_worker``: the async worker process of ``plinth up``.

Takes messages from the priority queues (0 first), runs each through the domain's
:class:`AsyncProcessor` and acks it only once the request is finished and its webhook
settled. While a request runs, a heartbeat keeps extending the message's visibility, so a
worker killed at any point loses nothing: the message reappears and another delivery picks
the request up (a finished request is never run twice: the record's conditional write).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from types import FrameType

from control_plane.domain.async_processing import Outcome, busy_backoff_s
from control_plane.domain.async_requests import PRIORITIES, queue_name
from control_plane.ports.queue import Message, Queue
from control_plane.settings import Settings
from control_plane.wiring import Platform

logger = logging.getLogger("plinth.async_worker")

VISIBILITY_S = 30.0
PURGE_EVERY_S = 5.0


def next_message(queue: Queue) -> tuple[str, Message] | None:
    """The next visible message, lowest priority number first."""
    for priority in PRIORITIES:
        name = queue_name(priority)
        messages = queue.receive(name, max_messages=1, visibility_timeout_s=VISIBILITY_S)
        if messages:
            return name, messages[0]
    return None


def handle(platform: Platform, name: str, message: Message) -> Outcome:
    """Run one delivery; DONE also when it failed (left unacked, it is redelivered later)."""
    done = threading.Event()

    def heartbeat() -> None:
        while not done.wait(VISIBILITY_S / 3):
            platform.queue.change_visibility(name, message.receipt, VISIBILITY_S)

    beat = threading.Thread(target=heartbeat, name="async-heartbeat", daemon=True)
    beat.start()
    outcome = Outcome.DONE
    try:
        request_id = json.loads(message.body)["request_id"]
        # BUSY: the request went back to its queue with a fresh message, visible at once,
        # so the next free slot goes to whatever is first in priority order when a thread
        # polls, not to the message this thread held. Either way this delivery is done.
        outcome = platform.async_processor.process(request_id)
        platform.queue.ack(name, message.receipt)
    except Exception:
        # Left unacked: the message reappears after its visibility timeout.
        logger.exception("async message %s failed; it will be redelivered", message.id)
    finally:
        done.set()
        beat.join()
    return outcome


def work(platform: Platform, stop: threading.Event, idle_s: float) -> None:
    next_purge = 0.0
    busy = 0  # full-replica answers in a row: this thread backs off before polling again
    while not stop.is_set():
        if platform.clock() >= next_purge:
            platform.async_requests.purge()
            next_purge = platform.clock() + PURGE_EVERY_S
        found = next_message(platform.queue)
        if found is None:
            stop.wait(idle_s)
            continue
        if handle(platform, *found) is Outcome.BUSY:
            busy += 1
            stop.wait(busy_backoff_s(busy))
        else:
            busy = 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m control_plane.async_worker")
    parser.add_argument("--concurrency", type=int, default=4, help="requests run at once")
    parser.add_argument("--idle", type=float, default=0.1, help="seconds between empty polls")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    platform = Platform(Settings.from_env())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    threads = [
        threading.Thread(target=work, args=(platform, stop, args.idle), name=f"async-{n}")
        for n in range(max(1, args.concurrency))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    platform.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
