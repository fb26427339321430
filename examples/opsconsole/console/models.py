from django.conf import settings
from django.db import models


class Run(models.Model):
    """One run of an allow-listed command: who, when, how it ended, what it printed."""

    class Status(models.TextChoices):
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"
        TIMED_OUT = "timed out"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT)
    command = models.CharField(max_length=40)
    args = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.RUNNING)
    exit_status = models.IntegerField(null=True, blank=True)
    started = models.DateTimeField(auto_now_add=True)
    duration = models.FloatField(null=True, blank=True, help_text="seconds")
    output = models.TextField(blank=True)
    output_truncated = models.BooleanField(default=False)

    class Meta:
        ordering = ["-started", "-pk"]

    def __str__(self) -> str:
        return f"{self.command} by {self.user} ({self.status})"
