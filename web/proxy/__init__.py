"""The predict and train views, their bodies, and the one client of the algorithm service."""
