"""The local harness: `make run` and the embedded PostgreSQL and Redis (never imported by a
service)."""
