"""A project with every kind of legacy upload usage, and decoys that are fine."""
