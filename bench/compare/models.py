"""The Django model of bench_item, for the Django async ORM contender."""

from __future__ import annotations

from django.db import models


class Item(models.Model):
    """bench_item, created and seeded by schema.py (so not managed by Django)."""

    id = models.IntegerField(primary_key=True)
    name = models.CharField(max_length=40)

    class Meta:
        managed = False
        db_table = "bench_item"

    def __str__(self) -> str:
        return self.name
