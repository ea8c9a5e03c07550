"""The service API: the one way to storage for every way in."""
