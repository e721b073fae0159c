from django.apps import AppConfig


class TokensConfig(AppConfig):
    name = "web.auth"
    label = "tokens"  # "auth" is django.contrib.auth's label
    verbose_name = "API tokens"
