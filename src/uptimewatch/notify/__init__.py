"""Notifications: the durable outbox and one module per channel (email, mqtt, webhook, alertmanager)."""
