from django.apps import AppConfig


class ChatlogConfig(AppConfig):
    name = "chatlog"
    verbose_name = "CyTube chat log"
