"""What the example scripts share: the same arguments, read the same way, and logging
that shows the connection and what the handlers do.

Every script takes ``--nats URL``, ``--channel NAME`` and ``--domain DOMAIN``, which
default to $KRYTEN_NATS_URL, $KRYTEN_CHANNEL and $KRYTEN_DOMAIN, else to the demo's
(``kryten-sync demo --port 4222``): nats://127.0.0.1:4222, lounge, cytu.be.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any


def parse_args(
    description: str | None, argv: Sequence[str] | None = None, **extra: dict[str, Any]
) -> argparse.Namespace:
    """The shared options (plus ``extra``: ``--name`` -> add_argument keywords); sets up
    logging at INFO on stderr."""
    env = os.environ.get
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--nats",
        metavar="URL",
        default=env("KRYTEN_NATS_URL", "nats://127.0.0.1:4222"),
        help="NATS server (default: $KRYTEN_NATS_URL, else nats://127.0.0.1:4222)",
    )
    parser.add_argument(
        "--channel",
        metavar="NAME",
        default=env("KRYTEN_CHANNEL", "lounge"),
        help="CyTube channel (default: $KRYTEN_CHANNEL, else lounge)",
    )
    parser.add_argument(
        "--domain",
        metavar="DOMAIN",
        default=env("KRYTEN_DOMAIN", "cytu.be"),
        help="CyTube server (default: $KRYTEN_DOMAIN, else cytu.be)",
    )
    for flag, options in extra.items():
        parser.add_argument(f"--{flag}", **options)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return args


def client_config(args: argparse.Namespace) -> dict[str, Any]:
    """The KrytenClient configuration for the parsed arguments."""
    return {
        "nats": {"servers": [args.nats]},
        "channels": [{"domain": args.domain, "channel": args.channel}],
    }
