from typing import Any

from django.conf import settings
from django.db import models

#: The columns an upload must have (more are ignored); ``company`` may be empty.
COLUMNS = ("name", "email", "company")


class Job(models.Model):
    """One uploaded CSV file and its import, run by a Celery task."""

    QUEUED, RUNNING, DONE, FAILED = "queued", "running", "done", "failed"
    STATES = [(s, s) for s in (QUEUED, RUNNING, DONE, FAILED)]

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    file = models.FileField(upload_to="imports/%Y/%m/%d/", blank=True)
    filename = models.CharField(max_length=255)
    task_id = models.CharField(max_length=64, blank=True, db_index=True)
    state = models.CharField(max_length=10, choices=STATES, default=QUEUED)
    total = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    imported = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    #: ``[{"line": 4, "reason": "..."}, ...]``, at most ``settings.JOBS_MAX_REASONS``.
    reasons = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]

    def __str__(self) -> str:
        return f"{self.filename} ({self.state})"

    @property
    def is_final(self) -> bool:
        return self.state in (self.DONE, self.FAILED)

    @property
    def percent(self) -> int:
        return 100 if self.state == self.DONE else int(100 * self.processed / (self.total or 1))

    def as_frame(self) -> dict[str, Any]:
        """The job as its WebSocket's ``state`` frame gives it."""
        return {
            "job": self.pk,
            "state": self.state,
            "total": self.total,
            "current": self.processed,
            "imported": self.imported,
            "rejected": self.rejected,
            "reasons": self.reasons,
            "error": self.error,
            "file_kept": bool(self.file),
        }


class Contact(models.Model):
    """A row imported from a CSV file: one contact per email address and owner."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    job = models.ForeignKey(Job, null=True, on_delete=models.SET_NULL, related_name="contacts")
    name = models.CharField(max_length=200)
    email = models.EmailField()
    company = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "email"], name="jobs_contact_owner_email")
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>"


class Heartbeat(models.Model):
    """What the periodic task (Celery beat) last did: one row per task name."""

    name = models.CharField(max_length=50, unique=True)
    runs = models.PositiveIntegerField(default=0)
    last = models.DateTimeField()
    pid = models.PositiveIntegerField(default=0)
    purged = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name}: {self.runs} runs, last {self.last:%H:%M:%S}"
