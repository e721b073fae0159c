from django.apps import AppConfig


class DataConfig(AppConfig):
    name = "web.data"
    label = "data"
