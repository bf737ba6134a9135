"""On-call: notifications delivered exactly once across daemons, and the outgoing heartbeat."""
