"""When a version's files were deleted from the object store, so a failed deletion is retried.

A nullable column with no default: PostgreSQL adds it without rewriting the table. Versions
whose files were removed before it existed read as not yet deleted from the store; in a
deployment with MODEL_STORE_URL the worker's next prunings delete them (again: deleting a key
that is gone succeeds) and record it.
"""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('registry', '0005_model_names'),
    ]

    operations = [
        migrations.AddField(
            model_name='modelversion',
            name='store_files_deleted_at',
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
