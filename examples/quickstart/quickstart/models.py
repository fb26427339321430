from django.db import models


class Greeting(models.Model):
    """One row per POST to /hello: something for the async ORM to count."""

    name = models.CharField(max_length=100)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return self.name
