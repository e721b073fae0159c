"""The Celery worker: trains a model from the web database and publishes it (see tasks.py)."""
