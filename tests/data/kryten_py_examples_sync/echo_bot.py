"""Simple echo bot example."""

import logging

from kryten_sync import ChatMessageEvent, KrytenClient


def main():
    """Simple echo bot that repeats user messages."""

    # Configure logging
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s - %(name)s - %(levelname)s - %(message)s",
    )

    # Configuration
    config = {
        "nats": {
            "servers": ["nats://localhost:4222"],
            # Uncomment for authentication:
            # "user": "kryten",
            # "password": "secret"
        },
        "channels": [{"domain": "cytu.be", "channel": "lounge"}],
    }

    # Create and run bot
    with KrytenClient(config) as client:

        @client.on("chatmsg")
        def on_chat(event: ChatMessageEvent):
            """Echo user messages."""
            # Don't echo ourselves
            if event.username != "EchoBot":
                client.send_chat(event.channel, f"{event.username} said: {event.message}")

        print("Echo bot started! Press Ctrl+C to stop.")
        client.run()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("\nBot stopped by user")
