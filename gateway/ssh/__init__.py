"""The SSH front ends: accepting connections, authenticating keys, running sessions."""
