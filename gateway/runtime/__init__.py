"""Running replicas: the process, its workers, health endpoints and SIGHUP."""
