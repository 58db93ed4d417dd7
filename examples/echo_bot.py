"""Answer ``!echo some text`` in chat with ``some text`` until Ctrl-C.

    python examples/echo_bot.py --nats nats://127.0.0.1:4222 --channel lounge

Options default to $KRYTEN_NATS_URL, $KRYTEN_CHANNEL and $KRYTEN_DOMAIN (see --help).
"""

import logging

from _common import client_config, parse_args

from kryten_sync import ChatMessageEvent, KrytenClient


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    client = KrytenClient(client_config(args))

    @client.on("chatMsg")  # runs on a worker thread, so blocking calls are fine here
    def echo(event: ChatMessageEvent) -> None:
        command, _, text = event.message.partition(" ")
        if command == "!echo" and text.strip():
            client.send_chat(event.channel, text.strip())
            logging.info("echoed %r for %s", text.strip(), event.username)

    client.run()  # connects, blocks until Ctrl-C / SIGTERM, then disconnects


if __name__ == "__main__":
    main()
