from django.db import models


class ChatMessage(models.Model):
    """One chat message seen in a CyTube channel."""

    domain = models.CharField(max_length=255)
    channel = models.CharField(max_length=255, db_index=True)
    username = models.CharField(max_length=255)
    message = models.TextField()
    sent_at = models.DateTimeField(help_text="when the bridge saw the message")
    stored_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["sent_at", "id"]

    def __str__(self) -> str:
        return f"[{self.channel}] <{self.username}> {self.message}"
