"""The projection: a pure fold of the uptime log, its runner, snapshot and queries."""
