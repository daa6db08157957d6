"""One module per `pypissh-migrate` command group."""
