"""pypissh-gateway: legacy SSH uploads carried to the modern upload API."""

__version__ = "0.1.0"
