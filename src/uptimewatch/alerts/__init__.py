"""The alert engine: rules over the health model, a pure lifecycle state machine, grouping,
routing (roster, escalation, critical periods), acks, silences and maintenance, persisted in SQLite.

The ``alerting:`` section's models live with the rest of the configuration
(:mod:`uptimewatch.config.alerting`).
"""
