"""Pytest helper: make sure the real services are up for a test session.

Integration tests must fail loudly when a service cannot start (skipping would hide a broken
environment), so this raises with the cause and log tail instead of returning a flag.
"""

from __future__ import annotations

from rdg_platform.local_services.manager import DEFAULT_TIMEOUT_S, ServiceError, ServiceManager
from rdg_platform.settings import Settings


def ensure_services(
    settings: Settings, services: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT_S
) -> ServiceManager:
    """Start (or reuse) the services for ``settings`` and return the manager once all are healthy.

    Safe to call from every pytest-xdist worker: up() takes a per-state-dir lock and is a no-op
    when everything is already healthy. Services are left running after the session so the next
    run starts instantly; `rdg services down` stops them.
    """
    manager = ServiceManager(settings, echo=print)
    manager.up(services, timeout=timeout)
    unhealthy = [st for st in manager.status(services).values() if not st.healthy]
    if unhealthy:
        details = "\n".join(f"{st.name}: {st.state} {st.detail} (log: {st.log})" for st in unhealthy)
        raise ServiceError(f"services not healthy after up():\n{details}")
    return manager
