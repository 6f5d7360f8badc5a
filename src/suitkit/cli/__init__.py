"""The suitkit command line."""
