from django.db import models
from django.db.models.expressions import RawSQL

ROWS = 100
QUERY_SECONDS = 0.05


class Row(models.Model):
    name = models.CharField(max_length=64)
    value = models.IntegerField()
    note = models.CharField(max_length=200, default="")

    def as_dict(self) -> dict[str, object]:
        return {"id": self.pk, "name": self.name, "value": self.value, "note": self.note}


def slow_query() -> "models.QuerySet[Row]":
    """One row and ``SLEEP(0.05)``: a 50 ms query that Django compiles (so hybrid's
    native path runs it on aiomysql, the other stacks on PyMySQL)."""
    return (
        Row.objects.filter(pk=1)
        .annotate(s=RawSQL("SLEEP(%s)", [QUERY_SECONDS]))
        .values_list("s", flat=True)
    )
