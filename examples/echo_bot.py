"""Answer ``!echo some text`` in chat with ``some text`` until Ctrl-C.

    python examples/echo_bot.py nats://127.0.0.1:4222 lounge cytu.be

Arguments default to $KRYTEN_NATS_URL, $KRYTEN_CHANNEL and $KRYTEN_DOMAIN.
"""

import os
import sys

from kryten_sync import ChatMessageEvent, KrytenClient


def main(argv: list[str]) -> None:
    env = os.environ.get
    server = argv[0] if argv else env("KRYTEN_NATS_URL", "nats://127.0.0.1:4222")
    channel = argv[1] if len(argv) > 1 else env("KRYTEN_CHANNEL", "lounge")
    domain = argv[2] if len(argv) > 2 else env("KRYTEN_DOMAIN", "cytu.be")
    client = KrytenClient(
        {"nats": {"servers": [server]}, "channels": [{"domain": domain, "channel": channel}]}
    )

    @client.on("chatMsg")  # runs on a worker thread, so blocking calls are fine here
    def echo(event: ChatMessageEvent) -> None:
        command, _, text = event.message.partition(" ")
        if command == "!echo" and text.strip():
            client.send_chat(event.channel, text.strip())
            print(f"echoed {text.strip()!r} for {event.username}", flush=True)

    print(f"echo bot on {domain}/{channel} via {server}; Ctrl-C to stop", flush=True)
    client.run()  # connects, blocks until Ctrl-C / SIGTERM, then disconnects


if __name__ == "__main__":
    main(sys.argv[1:])
