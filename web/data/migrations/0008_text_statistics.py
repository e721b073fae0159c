# Statistics on UPPER(text), the expression every `?search=` tests (icontains), so that the
# planner estimates how many rows a word matches from a sample of texts instead of assuming
# one in ten thousand: a common word's page is then read by walking the page's own index until
# the page is full (a few hundred rows for "library", a few thousand for "kernel"), a rare
# word's from the trigram index, as before. The sample target is 1000 (a histogram of 1000
# texts): at 100 a word in one row of a hundred still looked rare (183-207 ms a page at two
# million rows against 4-6 ms), at 300 a rare one looked common (docs/data.md). ANALYZE
# takes a share lock that blocks neither reads nor writes (3 s at two million rows).

from django.db import migrations

STATISTICS = "data_text_upper_stats"


class Migration(migrations.Migration):

    dependencies = [
        ('data', '0007_indexes_lead_with_model'),
    ]

    operations = [
        migrations.RunSQL(
            sql=[
                f"CREATE STATISTICS {STATISTICS} ON (UPPER(text)) FROM data",
                f"ALTER STATISTICS {STATISTICS} SET STATISTICS 1000",
                "ANALYZE data",
            ],
            reverse_sql=[f"DROP STATISTICS {STATISTICS}"],
        ),
    ]
