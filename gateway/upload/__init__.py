"""One legacy upload: framing, multipart intake, the artifact, the rebuilt form, the upstream."""
