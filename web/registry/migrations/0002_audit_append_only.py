"""The audit trail is append-only in the database itself, whoever connects."""

from django.db import migrations

REFUSE_CHANGES = """
CREATE FUNCTION audit_event_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_event is append-only: % refused', TG_OP;
END $$;
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_event
    FOR EACH ROW EXECUTE FUNCTION audit_event_refuse_change();
"""
ALLOW_CHANGES = """
DROP TRIGGER audit_event_append_only ON audit_event;
DROP FUNCTION audit_event_refuse_change();
"""


class Migration(migrations.Migration):
    dependencies = [("registry", "0001_initial")]

    operations = [migrations.RunSQL(REFUSE_CHANGES, ALLOW_CHANGES)]
