"""Migration tooling: accounts, keys, guides, notices, campaigns and reports."""
