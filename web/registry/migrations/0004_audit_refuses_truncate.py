"""The audit trail refuses TRUNCATE too: the append-only trigger of 0002 fires per row, and
TRUNCATE removes rows without firing row triggers."""

from django.db import migrations

REFUSE_TRUNCATE = """
CREATE TRIGGER audit_event_no_truncate BEFORE TRUNCATE ON audit_event
    FOR EACH STATEMENT EXECUTE FUNCTION audit_event_refuse_change();
"""
ALLOW_TRUNCATE = "DROP TRIGGER audit_event_no_truncate ON audit_event;"


class Migration(migrations.Migration):
    dependencies = [("registry", "0003_training_run_request_id")]

    operations = [migrations.RunSQL(REFUSE_TRUNCATE, ALLOW_TRUNCATE)]
