"""Every column type Django maps on MySQL, nullable columns, FK, O2O and M2M."""

from __future__ import annotations

import uuid

from django.db import models


class Owner(models.Model):
    name = models.CharField(max_length=50, unique=True)
    rank = models.IntegerField(default=0)

    class Meta:
        app_label = "nativedb"


class Item(models.Model):
    i = models.IntegerField()
    big = models.BigIntegerField()
    dec = models.DecimalField(max_digits=12, decimal_places=3)
    fl = models.FloatField()
    flag = models.BooleanField()
    name = models.CharField(max_length=40)
    body = models.TextField()
    day = models.DateField()
    at = models.DateTimeField()
    time_of = models.TimeField()
    dur = models.DurationField()
    uid = models.UUIDField()
    data = models.JSONField()
    blob = models.BinaryField()
    maybe = models.IntegerField(null=True)
    note = models.CharField(max_length=20, null=True)
    owner = models.ForeignKey(Owner, null=True, on_delete=models.CASCADE, related_name="items")
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "nativedb"


class Profile(models.Model):
    owner = models.OneToOneField(Owner, on_delete=models.CASCADE, related_name="profile")
    bio = models.CharField(max_length=100, default="")

    class Meta:
        app_label = "nativedb"


class Tag(models.Model):
    name = models.CharField(max_length=20)
    items = models.ManyToManyField(Item, related_name="tags")

    class Meta:
        app_label = "nativedb"


class Doc(models.Model):
    """A UUID primary key with a default, a default and a nullable FK."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    title = models.CharField(max_length=50, unique=True)
    hits = models.IntegerField(default=7)
    owner = models.ForeignKey(Owner, null=True, on_delete=models.DO_NOTHING, related_name="+")

    class Meta:
        app_label = "nativedb"


class Note(models.Model):
    """Nothing refers to it: deletes need no Collector cascade."""

    text = models.CharField(max_length=50)
    n = models.IntegerField(default=0)
    stamp = models.DateTimeField(auto_now=True)

    class Meta:
        app_label = "nativedb"


MODELS = [Owner, Item, Profile, Tag, Doc, Note]
