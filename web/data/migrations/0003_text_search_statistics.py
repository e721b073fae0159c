# Statistics on UPPER(text), the expression `?search=` filters on: without them the planner
# guesses a fixed, tiny share of matches for every LIKE pattern, and reads every match of a
# common word through the trigram index before sorting them. A larger sample (1000) lets it see
# words that match a few rows in a thousand. CREATE STATISTICS does not block writes.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('data', '0002_list_and_search_indexes'),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                'CREATE STATISTICS IF NOT EXISTS data_upper_text_stats ON (UPPER("text")) FROM "data"',
                'ALTER STATISTICS data_upper_text_stats SET STATISTICS 1000',
            ],
            reverse_sql=['DROP STATISTICS IF EXISTS data_upper_text_stats'],
        ),
    ]
