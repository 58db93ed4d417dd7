"""Print every chat message of a channel until Ctrl-C.

python examples/print_chat.py nats://127.0.0.1:4222 cytu.be lounge
"""

import sys

from kryten_sync import ChatMessageEvent, KrytenClient


def main(server: str, domain: str, channel: str) -> None:
    config = {"nats": {"servers": [server]}, "channels": [{"domain": domain, "channel": channel}]}
    client = KrytenClient(config)

    @client.on("chatMsg")
    def show(event: ChatMessageEvent) -> None:
        print(f"[{event.timestamp:%H:%M:%S}] <{event.username}> {event.message}", flush=True)

    client.run()  # connects, blocks until Ctrl-C / SIGTERM, then disconnects


if __name__ == "__main__":
    main(*sys.argv[1:4])
