from django.db import models


class Article(models.Model):
    """A model for key-building and counter tests."""

    title = models.CharField(max_length=200)

    def __str__(self) -> str:
        return self.title
