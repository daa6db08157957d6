"""Local stand-ins for the world around the gateway: a TLS pypiserver upstream, a test CA,
the legacy pypissh client and sample legacy projects. Used by the demo, the tests and bench/."""
