"""web.settings with the one-view URLconf of the Django ceiling."""

from web.settings import *  # noqa: F403 - the point is to inherit every setting

ROOT_URLCONF = "loadtests.servers.django_ceiling"
