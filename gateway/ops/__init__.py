"""What every layer records and runs on: metrics, thread pools and the log."""
