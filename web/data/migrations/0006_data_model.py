# Rows belong to a model name; every existing row to `default`. A column with a constant
# default is added without rewriting the table (PostgreSQL 11+), whatever its size.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("data", "0005_label_in_trigram_index")]

    operations = [
        migrations.AddField(
            model_name="data",
            name="model",
            field=models.CharField(db_default="default", default="default", max_length=64),
        ),
    ]
