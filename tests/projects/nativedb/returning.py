"""Models whose saves get values back from the database: a ``db_default`` and a stored
``GeneratedField`` (tests/unit/db/test_db_returning.py creates and drops their tables)."""

from __future__ import annotations

from django.db import models
from django.db.models import F


class Counter(models.Model):
    name = models.CharField(max_length=20, unique=True)
    n = models.IntegerField(default=0)
    score = models.IntegerField(db_default=5)
    double = models.GeneratedField(
        expression=F("n") * 2, output_field=models.IntegerField(), db_persist=True
    )

    class Meta:
        app_label = "nativedb"


class Checked(models.Model):
    """``select_on_save``: Django's ``SELECT`` before its ``UPDATE``."""

    n = models.IntegerField(default=0)

    class Meta:
        app_label = "nativedb"
        select_on_save = True


MODELS = [Counter, Checked]
