# A token may be limited to some model names (web/auth/scope.py). NULL, every existing token's
# value, means every name: nothing changes for the tokens made before names existed.

import django.contrib.postgres.fields
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("tokens", "0001_api_token")]

    operations = [
        migrations.AddField(
            model_name="apitoken",
            name="models",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(max_length=64),
                blank=True,
                help_text="Model names this token may use; empty: every name.",
                null=True,
                size=None,
            ),
        ),
    ]
