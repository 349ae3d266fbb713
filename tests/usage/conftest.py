from __future__ import annotations

from providers.conftest import redis_url  # noqa: F401  (a real redis-server, by PID)
