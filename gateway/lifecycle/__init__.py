"""Retiring the SSH path: the schedule, the notices users see, the guide to twine."""
