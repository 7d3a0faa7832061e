"""Messaging mechanics: the consumer runner (inbox, retries, dead letters) and the outbox relay."""
