"""Settings of the example project; everything that varies comes from the environment.

KRYTEN_NATS_URL   NATS server(s), comma-separated (default nats://127.0.0.1:4222)
KRYTEN_DOMAIN     CyTube domain (default cytu.be)
KRYTEN_CHANNEL    channel to log (default lounge)
KRYTEN_SQLITE_PATH  the SQLite file (default: kryten_chatlog.sqlite3 in the temp dir)
KRYTEN_RUN_SECONDS  stop the bot after this many seconds (default: run until Ctrl-C)
"""

import os
import tempfile
from pathlib import Path

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "only-for-the-kryten-sync-example")
DEBUG = False
ALLOWED_HOSTS: list[str] = []
INSTALLED_APPS = ["chatlog"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get(
            "KRYTEN_SQLITE_PATH", str(Path(tempfile.gettempdir()) / "kryten_chatlog.sqlite3")
        ),
        # Each handler thread has its own connection; wait for a writer instead of failing.
        "OPTIONS": {"timeout": 20},
    }
}

KRYTEN = {
    "nats": {
        "servers": os.environ.get("KRYTEN_NATS_URL", "nats://127.0.0.1:4222").split(","),
    },
    "channels": [
        {
            "domain": os.environ.get("KRYTEN_DOMAIN", "cytu.be"),
            "channel": os.environ.get("KRYTEN_CHANNEL", "lounge"),
        }
    ],
}
KRYTEN_RUN_SECONDS = float(os.environ.get("KRYTEN_RUN_SECONDS") or 0)
