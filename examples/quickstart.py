"""A first bot: answers "!hello" in chat. Try it against the demo:

    kryten-sync demo --port 4222      # in one terminal: a simulated channel on NATS
    python quickstart.py              # in another: this bot
    kryten-sync say lounge '!hello' --as alice

The NATS server comes from $KRYTEN_NATS_URL (default nats://127.0.0.1:4222).
"""

import logging
import os

from kryten_sync import ChatMessageEvent, KrytenClient

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

config = {
    "nats": {"servers": [os.environ.get("KRYTEN_NATS_URL", "nats://127.0.0.1:4222")]},
    "channels": [{"domain": "cytu.be", "channel": "lounge"}],
}

with KrytenClient(config) as client:

    @client.on("chatMsg")
    def greet(event: ChatMessageEvent) -> None:  # runs on the channel's worker thread
        logging.info("<%s> %s", event.username, event.text)  # text: as typed, not HTML
        if event.text == "!hello":
            client.send_chat(event.channel, f"hello, {event.username}")

    client.run()  # blocks until Ctrl-C, SIGTERM or client.stop()
