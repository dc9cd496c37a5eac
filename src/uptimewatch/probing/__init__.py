"""Protocol code: one module per protocol (snmp, icmp); each returns Observations, never raises."""
