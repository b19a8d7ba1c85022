"""Per-team sliding-window rate limits in Redis (api.md §6.3).

Each scope keeps a sorted set of request timestamps per team; a Lua script trims the window,
counts and admits atomically, so two web processes share one budget exactly.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass

from django.conf import settings

from .errors import ApiError
from .redis import get_redis

_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
local count = redis.call('ZCARD', key)
local allowed = 0
if count < limit then
  redis.call('ZADD', key, now, ARGV[4])
  count = count + 1
  allowed = 1
end
redis.call('PEXPIRE', key, math.ceil(window * 1000))
local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
local first = now
if oldest[2] then first = tonumber(oldest[2]) end
return {allowed, count, tostring(first)}
"""


class RateLimited(ApiError):
    status_code = 429
    code = "RATE_LIMIT_EXCEEDED"
    default_message = "Rate limit exceeded. Please try again later."


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    reset_at: int  # unix seconds when the oldest request leaves the window
    retry_after: int

    def headers(self) -> dict[str, str]:
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(self.reset_at),
        }
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after)
        return headers


def rate_limit_hit(
    *, team_id: int, scope: str, limit: int | None = None, window_s: float | None = None
) -> RateDecision | None:
    """Count one request of `scope` for the team; None when the scope is not limited.

    `limit` and `window_s` default to ENIGMA_RATE_LIMITS[scope] and ENIGMA_RATE_LIMIT_WINDOW_S.
    """
    limit = settings.ENIGMA_RATE_LIMITS.get(scope) if limit is None else limit
    if not limit:
        return None
    window = float(settings.ENIGMA_RATE_LIMIT_WINDOW_S if window_s is None else window_s)
    now = time.time()
    allowed, count, first = get_redis().eval(
        _SCRIPT,
        1,
        f"enigma:rl:{scope}:{team_id}",
        now,
        window,
        limit,
        f"{now}:{secrets.token_hex(4)}",
    )
    reset = float(first) + window
    return RateDecision(
        allowed=bool(allowed),
        limit=limit,
        remaining=max(0, limit - int(count)),
        reset_at=math.ceil(reset),
        retry_after=max(1, math.ceil(reset - now)),
    )
