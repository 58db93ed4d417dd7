"""Print every chat message of a channel until Ctrl-C.

    python examples/print_chat.py --nats nats://127.0.0.1:4222 --channel lounge

Options default to $KRYTEN_NATS_URL, $KRYTEN_CHANNEL and $KRYTEN_DOMAIN (see --help).
"""

from _common import client_config, parse_args

from kryten_sync import ChatMessageEvent, KrytenClient


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    client = KrytenClient(client_config(args))

    @client.on("chatMsg")
    def show(event: ChatMessageEvent) -> None:
        # event.text: as typed (CyTube sends event.message as HTML)
        print(f"[{event.timestamp:%H:%M:%S}] <{event.username}> {event.text}", flush=True)

    client.run()  # connects, blocks until Ctrl-C / SIGTERM, then disconnects


if __name__ == "__main__":
    main()
