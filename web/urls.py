from django.contrib import admin
from django.urls import URLPattern, include, path, re_path
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from core.model_names import MODEL_NAME_PATTERN
from web import health
from web.data.transfer import DataExportView, DataImportView
from web.data.views import DataViewSet
from web.edge import observability
from web.proxy import inference_protocol as v2
from web.proxy import views as proxy
from web.registry import names, records
from web.registry import views as registry
from web.schema import openapi  # noqa: F401  (registers its schema extension with drf-spectacular)
from web.schema.views import SchemaView

VERSION = r"(?P<version>[0-9A-Za-z_.-]{1,64})"
ALIAS = r"(?P<alias>champion|previous|challenger)"
# A model name (core/model_names.py); the reserved `versions` and `aliases` match today's
# routes first, and the views answer 404 for them after that.
MODEL = rf"api/models/(?P<name>{MODEL_NAME_PATTERN})"
V2_MODEL = r"v2/models/(?P<name>[0-9A-Za-z_.-]{1,64})"
V2_VERSION = V2_MODEL + "/versions/" + VERSION


def registry_routes(prefix: str) -> list[URLPattern]:
    """The registry's routes under `prefix`: `api/models` (`default`'s) or one model name's."""
    return [
        re_path(
            rf"^{prefix}/versions/?$", registry.ModelVersionList.as_view(), name="model-versions"
        ),
        re_path(
            rf"^{prefix}/versions/{VERSION}/?$",
            registry.ModelVersionDetail.as_view(),
            name="model-version",
        ),
        re_path(
            rf"^{prefix}/versions/{VERSION}/restore/?$",
            registry.ModelVersionRestore.as_view(),
            name="model-version-restore",
        ),
        re_path(rf"^{prefix}/aliases/?$", registry.AliasList.as_view(), name="model-aliases"),
        re_path(
            rf"^{prefix}/aliases/champion/rollback/?$",
            registry.ChampionRollback.as_view(),
            name="model-alias-rollback",
        ),
        re_path(
            rf"^{prefix}/aliases/{ALIAS}/?$", registry.AliasDetail.as_view(), name="model-alias"
        ),
        re_path(
            rf"^{prefix}/aliases/{ALIAS}/history/?$",
            registry.AliasHistory.as_view(),
            name="model-alias-history",
        ),
    ]


router = SimpleRouter()
router.trailing_slash = "/?"  # accept both /api/data and /api/data/ (no redirects that drop bodies)
router.register("data", DataViewSet, basename="data")

urlpatterns = [
    re_path(r"^api/data/import/?$", DataImportView.as_view(), name="data-import"),
    re_path(r"^api/data/export/?$", DataExportView.as_view(), name="data-export"),
    path("api/", include(router.urls)),
    re_path(r"^api/predict/?$", proxy.predict, name="predict"),
    re_path(r"^api/train/?$", records.train_collection, name="train"),
    re_path(r"^api/train/(?P<job_id>[A-Za-z0-9_.-]{1,100})/?$", proxy.training_job, name="job"),
    *registry_routes(r"api/models"),
    # The same routes per model name: the same views and URL names (so the same roles).
    re_path(r"^api/models/?$", names.ModelList.as_view(), name="models"),
    *registry_routes(MODEL),
    re_path(r"^api/audit/?$", records.AuditList.as_view(), name="audit"),
    path("api/schema/", SchemaView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("admin/", admin.site.urls),
    path("health/live", health.live, name="health-live"),
    path("health/ready", health.ready, name="health-ready"),
    path("metrics", observability.metrics_view, name="metrics"),
    # The Open Inference Protocol (web/proxy/inference_protocol.py), as clients spell its paths.
    re_path(r"^v2$", v2.server_metadata, name="v2-server"),
    re_path(r"^v2/health/live$", v2.server_live, name="v2-live"),
    re_path(r"^v2/health/ready$", v2.server_ready, name="v2-ready"),
    re_path(rf"^{V2_MODEL}$", v2.model_metadata, name="v2-model"),
    re_path(rf"^{V2_MODEL}/ready$", v2.model_ready, name="v2-model-ready"),
    re_path(rf"^{V2_MODEL}/infer$", v2.infer, name="v2-infer"),
    re_path(rf"^{V2_VERSION}$", v2.model_metadata, name="v2-version"),
    re_path(rf"^{V2_VERSION}/ready$", v2.model_ready, name="v2-version-ready"),
    re_path(rf"^{V2_VERSION}/infer$", v2.infer, name="v2-version-infer"),
]

handler400 = "web.errors.bad_request_view"
handler404 = "web.errors.not_found_view"
handler500 = "web.errors.server_error_view"
