"""Create the SQLAlchemy tables in the migration's own transaction (docs/testing.md)."""

from __future__ import annotations

from django.db import migrations

from parallelq.sharing import shared_connection
from shop.tables import Base


def create_tables(apps, schema_editor):
    with shared_connection(schema_editor.connection.alias) as connection:
        Base.metadata.create_all(connection)


def drop_tables(apps, schema_editor):
    with shared_connection(schema_editor.connection.alias) as connection:
        Base.metadata.drop_all(connection)


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [migrations.RunPython(create_tables, drop_tables)]
