"""The Celery tasks: the import of one uploaded file, and the periodic housekeeping.

Both run in the Celery worker that ``hybrid serve --celery "worker ..."`` starts, with the
plain (sync) ORM. The import reports progress with ``hybrid.tasks.progress`` every
``JOBS_PROGRESS_EVERY`` rows: that stores it in the result backend and sends it to the
task's group, where the job page's WebSocket hears it on whichever web worker it is.
"""

import csv
import io
import os
import time
from datetime import timedelta
from typing import Any

from celery import shared_task
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone

import hybrid.tasks
from jobs.models import COLUMNS, Contact, Heartbeat, Job

#: The longest name and company a contact may have (the model's max_length).
MAX_FIELD = 200


class BadFile(ValueError):
    """The file as a whole cannot be imported (not UTF-8, not CSV, columns missing)."""


def read_header(text: io.TextIOBase) -> list[str]:
    """The normalised column names of the CSV in ``text`` (its first line); BadFile if a
    required one is missing."""
    try:
        header = next(csv.reader(text), None)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BadFile(f"not a CSV file of UTF-8 text ({exc})") from None
    columns = [name.strip().lower() for name in header or []]
    missing = [name for name in ("name", "email") if name not in columns]
    if missing:
        raise BadFile(
            f"the first line must name the columns ({', '.join(COLUMNS)}); "
            f"{' and '.join(missing)} missing"
        )
    return columns


def read_rows(job: Job) -> tuple[int, list[tuple[int, dict[str | None, Any]]]]:
    """How many columns the job's file has, and (line number, row) of each data row."""
    try:
        with job.file.open("rb") as raw:
            text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
            columns = read_header(text)
            reader = csv.DictReader(text, fieldnames=columns)
            rows = []
            for row in reader:
                rows.append((reader.line_num + 1, row))  # the header was line 1
                if len(rows) > settings.JOBS_MAX_ROWS:
                    raise BadFile(f"more than {settings.JOBS_MAX_ROWS} rows")
            return len(columns), rows
    except (csv.Error, UnicodeDecodeError) as exc:
        raise BadFile(f"not a CSV file of UTF-8 text ({exc})") from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, BadFile):
            raise
        raise BadFile(f"the uploaded file cannot be read ({exc})") from None


def check(row: dict[str | None, Any], width: int, seen: dict[str, int]) -> str | None:
    """Why ``row`` cannot be imported, or None when it can."""
    if None in row:  # csv.DictReader: the fields past the header's
        return f"{width + len(row[None])} fields where the header has {width}"
    if None in row.values():  # and the header's columns past the row's fields
        return f"{width - list(row.values()).count(None)} fields where the header has {width}"
    name, email = row["name"].strip(), row["email"].strip().lower()
    company = (row.get("company") or "").strip()
    if not name:
        return "the name is empty"
    if len(name) > MAX_FIELD or len(company) > MAX_FIELD:
        return f"a name or company longer than {MAX_FIELD} characters"
    if not email:
        return "the email is empty"
    try:
        validate_email(email)
    except ValidationError:
        return f"{email!r} is not an email address"
    if email in seen:
        line = seen[email]
        return f"{email} is on line {line} already" if line else f"{email} was imported before"
    return None


@shared_task(bind=True, name="jobs.tasks.import_contacts")
def import_contacts(self: Any, job_id: int) -> dict[str, Any]:
    """Import the contacts of job ``job_id``'s file; returns the job's summary (what the
    page's ``done`` frame shows)."""
    job = Job.objects.select_related("owner").get(pk=job_id)
    jobs = Job.objects.filter(pk=job_id)
    jobs.update(state=Job.RUNNING)
    try:
        return run_import(self, job, jobs)
    except BadFile as exc:
        jobs.update(state=Job.FAILED, error=str(exc), finished=timezone.now())
        return summary(job_id)
    except Exception as exc:  # a bug, the database...: the job says so, the task fails
        jobs.update(state=Job.FAILED, error=f"{type(exc).__name__}: {exc}", finished=timezone.now())
        raise


def run_import(task: Any, job: Job, jobs: Any) -> dict[str, Any]:
    width, rows = read_rows(job)
    total = len(rows)
    jobs.update(total=total)
    hybrid.tasks.progress(task, 0, total, job=job.pk, imported=0, rejected=0, reasons=[])
    # Known addresses: line 0 for those imported before, else the line that had it.
    seen = dict.fromkeys(Contact.objects.filter(owner=job.owner).values_list("email", flat=True), 0)
    imported = rejected = 0
    reasons: list[dict[str, Any]] = []
    new: list[dict[str, Any]] = []  # rejected since the last report
    every, delay = max(1, settings.JOBS_PROGRESS_EVERY), settings.JOBS_ROW_DELAY
    for current, (line, row) in enumerate(rows, 1):
        reason = check(row, width, seen)
        if reason is None:
            email = row["email"].strip().lower()
            try:
                Contact.objects.create(
                    owner=job.owner,
                    job=job,
                    name=row["name"].strip(),
                    email=email,
                    company=(row.get("company") or "").strip(),
                )
            except IntegrityError:  # another job of the same owner took it meanwhile
                reason = f"{email} was imported before"
            else:
                imported += 1
                seen[email] = line
        if reason is not None:
            rejected += 1
            if len(reasons) < settings.JOBS_MAX_REASONS:
                reasons.append({"line": line, "reason": reason})
                new.append(reasons[-1])
        if delay:
            time.sleep(delay)
        if current % every == 0 or current == total:
            jobs.update(processed=current, imported=imported, rejected=rejected, reasons=reasons)
            hybrid.tasks.progress(
                task, current, total, job=job.pk, imported=imported, rejected=rejected, reasons=new
            )
            new = []
    jobs.update(state=Job.DONE, processed=total, finished=timezone.now())
    return summary(job.pk)


def summary(job_id: int) -> dict[str, Any]:
    """The job as it ended (``task.done``'s result): the page's ``done`` frame."""
    return Job.objects.get(pk=job_id).as_frame()


@shared_task(name="jobs.tasks.housekeeping")
def housekeeping() -> int:
    """Sent by Celery beat (``CELERY_BEAT_SCHEDULE``): delete the files of jobs finished
    more than ``JOBS_KEEP_UPLOADS`` seconds ago, and leave a heartbeat. Returns how many
    files it deleted."""
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.JOBS_KEEP_UPLOADS)
    purged = 0
    old = Job.objects.filter(state__in=[Job.DONE, Job.FAILED], finished__lte=cutoff)
    for job in old.exclude(file=""):
        job.file.delete(save=False)
        Job.objects.filter(pk=job.pk).update(file="")
        purged += 1
    Heartbeat.objects.get_or_create(name="housekeeping", defaults={"last": now})
    Heartbeat.objects.filter(name="housekeeping").update(
        runs=F("runs") + 1, last=now, pid=os.getpid(), purged=F("purged") + purged
    )
    return purged
