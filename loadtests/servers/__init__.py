"""Small reference servers that `make bench` measures the services against."""
