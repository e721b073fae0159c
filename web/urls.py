from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from web import (
    health,
    observability,
    openapi,  # noqa: F401  (registers its schema extension with drf-spectacular)
    predict,
)
from web.data.transfer import DataExportView, DataImportView
from web.data.views import DataViewSet

router = SimpleRouter()
router.trailing_slash = "/?"  # accept both /api/data and /api/data/ (no redirects that drop bodies)
router.register("data", DataViewSet, basename="data")

urlpatterns = [
    re_path(r"^api/data/import/?$", DataImportView.as_view(), name="data-import"),
    re_path(r"^api/data/export/?$", DataExportView.as_view(), name="data-export"),
    path("api/", include(router.urls)),
    re_path(r"^api/predict/?$", predict.predict, name="predict"),
    re_path(r"^api/train/?$", predict.start_training, name="train"),
    re_path(r"^api/train/(?P<job_id>[A-Za-z0-9_.-]{1,100})/?$", predict.training_job, name="job"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", observability.metrics_view, name="metrics"),
]

handler400 = "web.errors.bad_request_view"
handler404 = "web.errors.not_found_view"
handler500 = "web.errors.server_error_view"
