from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DataConfig(AppConfig):
    name = "web.data"
    label = "data"

    def ready(self) -> None:
        from web.data.model_names import forget_known_names

        # A flush of the tables (tests) forgets the names too; names are never deleted otherwise.
        post_migrate.connect(forget_known_names, sender=self, dispatch_uid="forget_known_names")
