"""What the three services share: settings base, logging, metrics, the server pool, and the
contracts
between services (job shape and task name, the registry's serving protocol, limits).

No Django, Flask or Celery import here: import contracts in `make lint` hold the line.
"""
