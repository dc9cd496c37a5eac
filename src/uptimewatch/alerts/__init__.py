"""The alert engine: rules over the health model, a pure lifecycle state machine, grouping,
routing (roster, escalation, critical periods), acks, silences and maintenance, persisted in SQLite.

Kept import-free: ``uptimewatch.config.models`` imports :mod:`uptimewatch.alerts.config`, so this
package must not pull in anything that imports the configuration back.
"""
