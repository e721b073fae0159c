# One image for web, algorithm and the Celery worker; compose picks the service by its command.
#   docker build -t textclf .
# Runtime dependencies come from pyproject.toml's [project.dependencies] pinned by constraints.txt;
# the local/dev/bench extras never enter the image.

# --- requirements: only the dependency list, so editing ruff or pytest settings in pyproject.toml
# --- does not invalidate the (slow) install layer below.
FROM python:3.11-slim AS requirements
WORKDIR /src
COPY pyproject.toml ./
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write(chr(10).join(deps) + chr(10))"

# --- build: a virtual environment with the pinned dependencies. Bytecode stays (faster starts);
# --- pip itself, its cache, the libraries' test suites, C sources and translation sources go.
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY --from=requirements /src/requirements.txt /tmp/requirements.txt
COPY constraints.txt /tmp/constraints.txt
RUN /venv/bin/pip install --quiet -c /tmp/constraints.txt -r /tmp/requirements.txt \
    && /venv/bin/pip uninstall --quiet --yes pip \
    && find /venv/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
    && find /venv/lib \( -name '*.po' -o -name '*.pyx' -o -name '*.pxd' -o -name '*.c' \
        -o -name '*.cpp' -o -name '*.h' \) -type f -delete

# --- runtime: the venv, the code, a non-root user.
FROM python:3.11-slim AS runtime
ENV PATH=/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VAR_DIR=/app/var \
    MODEL_DIR=/models \
    WEB_HOST=0.0.0.0 \
    ALGORITHM_HOST=0.0.0.0
# DJANGO_SETTINGS_MODULE is set for web and migrate only: Celery's Django fix-up would otherwise
# load the web settings (and demand DJANGO_SECRET_KEY) in the worker.
# /models is created here, owned by the app user, so a fresh named volume mounted on it inherits
# that owner and the worker can publish models without running as root.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --shell /usr/sbin/nologin app \
    && mkdir -p /app/var /models \
    && chown app:app /app/var /models
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=root:root web ./web
COPY --chown=root:root algorithm ./algorithm
COPY --chown=root:root worker ./worker
COPY --chown=root:root core ./core
# Static files (Swagger UI) collected into /app/staticfiles, read-only for the app user; web
# serves them from there. DEBUG only for this one command: it needs no secret key.
RUN DJANGO_SETTINGS_MODULE=web.settings DJANGO_DEBUG=true python -m django collectstatic --noinput -v 0 \
    && python -m compileall -q /app
USER app
EXPOSE 8000 8001
CMD ["python", "-m", "web"]
