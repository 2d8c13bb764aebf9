"""Local real services (Kafka KRaft, Cassandra 5.0, Apicurio schema registry) run as JVM processes.

Use :class:`ServiceManager` from code and tests; ``rdg services up|down|status`` wraps it.
"""

from rdg_platform.local_services.manager import SERVICE_NAMES, ServiceError, ServiceManager, ServiceStatus

__all__ = ["SERVICE_NAMES", "ServiceError", "ServiceManager", "ServiceStatus"]
