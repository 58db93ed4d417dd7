#!/usr/bin/env python
"""Django's command-line utility for the kryten-sync example project.

    python manage.py migrate
    python manage.py kryten_bot            # Ctrl-C to stop

Settings come from the environment (see botsite/settings.py).
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "botsite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
