"""Process management: embedded PostgreSQL and Redis, the `make run` supervisor, server pools."""
