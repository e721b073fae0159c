# The blank checks with a fast path (web/data/models.py, `not_blank`): a value whose first
# character is printable ASCII and not a space is not blank, without the regular expression that
# made up 8 % of a million-row import's PostgreSQL time. Same rule as before, so the existing
# rows hold it; still checked (VALIDATE) without a write lock on a big table: each new check is
# added NOT VALID (a moment's lock, no scan), validated under a lock that lets reads and writes
# go on, and only then takes the old one's place and name. Outside a transaction (atomic =
# False), so no statement holds its lock until the end of the migration.

import django.db.models.functions.text
import django.db.models.lookups
from django.db import migrations, models

COLUMNS = ("text", "label")


def swap(column: str, condition: str) -> list[str]:
    name = f"data_{column}_not_blank"
    return [
        f"ALTER TABLE data ADD CONSTRAINT {name}_new CHECK ({condition}) NOT VALID",
        f"ALTER TABLE data VALIDATE CONSTRAINT {name}_new",
        f"ALTER TABLE data DROP CONSTRAINT {name}",
        f"ALTER TABLE data RENAME CONSTRAINT {name}_new TO {name}",
    ]


def fast(column: str) -> str:
    return f"ascii({column}) BETWEEN 33 AND 126 OR {column} ~ '\\S'"


def regex_only(column: str) -> str:
    return f"{column} ~ '\\S'"


class Migration(migrations.Migration):

    atomic = False

    dependencies = [
        ('data', '0008_text_statistics'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=swap(column, fast(column)),
                    reverse_sql=swap(column, regex_only(column)),
                )
                for column in COLUMNS
            ],
            state_operations=[
                operation
                for column in COLUMNS
                for operation in (
                    migrations.RemoveConstraint(model_name='data', name=f'data_{column}_not_blank'),
                    migrations.AddConstraint(
                        model_name='data',
                        constraint=models.CheckConstraint(
                            condition=models.Q(
                                django.db.models.lookups.Range(
                                    django.db.models.functions.text.Ord(column), (33, 126)
                                ),
                                (f'{column}__regex', '\\S'),
                                _connector='OR',
                            ),
                            name=f'data_{column}_not_blank',
                        ),
                    ),
                )
            ],
        ),
    ]
