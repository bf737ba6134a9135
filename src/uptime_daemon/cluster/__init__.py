"""Membership and ownership of services across daemons sharing one store (DESIGN §9).

Three rooms, pure to impure: ``ownership`` (which alive members own a service: rendezvous hashing),
``members`` (the membership events and the fold that says who is alive at an instant) and
``membership`` (the shell that heartbeats, follows the members stream and reports changes). The
package imports only the store port, the clock and the error tree, so the scheduler can use it
without the cluster knowing about services, probes or configuration.
"""

from __future__ import annotations

from uptime_daemon.cluster.membership import Membership
from uptime_daemon.cluster.ownership import owned_by, owners

__all__ = ["Membership", "owned_by", "owners"]
