"""Rate limits, repeat-offender blocks and the login brute-force defence.

A :class:`Limiter` checks every :class:`Policy` that applies to a request at once:
:class:`MemoryLimiter` in process (the embedded default), :class:`RedisLimiter` shared
by every instance in one round trip, :class:`LimitsLimiter` through the ``limits``
library for Redis Cluster and Sentinel, and :class:`ResilientLimiter` to fall back in
process while Redis is down. :class:`LoginDefence` guards password logins.
"""

from bastion.throttle._attempts import AttemptStore, MemoryAttemptStore, RedisAttemptStore
from bastion.throttle._gcra import MemoryLimiter
from bastion.throttle._limits import LimitsLimiter
from bastion.throttle._login import FailureOutcome, LoginDefence, LoginGate, LoginRules
from bastion.throttle._model import (
    Check,
    Escalation,
    Limiter,
    Policy,
    PolicyState,
    StoreUnavailableError,
    Verdict,
)
from bastion.throttle._redis import RedisLimiter
from bastion.throttle._resilient import ResilientLimiter

__all__ = [
    "AttemptStore",
    "Check",
    "Escalation",
    "FailureOutcome",
    "Limiter",
    "LimitsLimiter",
    "LoginDefence",
    "LoginGate",
    "LoginRules",
    "MemoryAttemptStore",
    "MemoryLimiter",
    "Policy",
    "PolicyState",
    "RedisAttemptStore",
    "RedisLimiter",
    "ResilientLimiter",
    "StoreUnavailableError",
    "Verdict",
]
