"""A Django model, written with Django's ORM."""

from __future__ import annotations

from django.db import models


class Shelf(models.Model):
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name
