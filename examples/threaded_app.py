"""One client shared by many threads, the way a threaded web server would use it.

    python examples/threaded_app.py --nats nats://127.0.0.1:4222 --channel lounge --requests 8

Options default to $KRYTEN_NATS_URL, $KRYTEN_CHANNEL and $KRYTEN_DOMAIN (see --help). Each
"request" runs on a pool thread, asks the bridge something (a blocking request/reply)
and posts a chat line; no locks are needed around the client. Chat lines go through
the client's own flood limiter (4 at once, then one a second), so the last ones wait.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from _common import client_config, parse_args

from kryten_sync import KrytenClient, KrytenError


def handle_request(client: KrytenClient, channel: str, number: int) -> str:
    """What a view function would do: query the bridge, then post a chat line."""
    if number % 2:
        users = client.get_userlist(channel)
        answer = f"{len(users)} users online"
    else:
        pong = client.ping(channel=channel)
        answer = f"bridge {pong.get('version', '?')} is up"
    client.send_chat(channel, f"request {number}: {answer}")
    logging.info("request %d: %s", number, answer)
    return threading.current_thread().name


def main() -> int:
    args = parse_args(
        __doc__.splitlines()[0],
        requests={"type": int, "default": 8, "help": "how many requests (default: 8)"},
    )
    channel, requests = args.channel, args.requests
    config = client_config(args)

    started = time.monotonic()
    served_by: Counter[str] = Counter()
    errors: list[str] = []
    with (
        KrytenClient(config) as client,
        ThreadPoolExecutor(max_workers=4, thread_name_prefix="request") as pool,
    ):
        futures = [pool.submit(handle_request, client, channel, n) for n in range(requests)]
        for future in futures:
            try:
                served_by[future.result()] += 1
            except KrytenError as exc:  # timeouts, no bridge, bridge-reported failures
                errors.append(f"{type(exc).__name__}: {exc}")
        client.flush()  # every chat line has reached the NATS server
        health = client.health()
    elapsed = time.monotonic() - started
    for error in errors:
        logging.error("%s", error)
    print(
        f"{requests - len(errors)}/{requests} requests served by {len(served_by)} threads "
        f"in {elapsed:.1f} s over one connection ({health.commands_sent} commands sent)"
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
