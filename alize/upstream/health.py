"""Whether each replica is fit to take requests.

Passive: a replica that fails this many requests in a row (connection refused or reset,
a 5xx, a timeout) is ejected for a cool-down, which doubles each time it is ejected again
(up to a ceiling) and resets once it is back. Active: a health check every few seconds;
a failing check ejects too, and an ejected replica is taken back only when a check passes
after its cool-down. A clock is injected, so that all of it is tested without waiting."""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

EJECT_AFTER = 3  # consecutive failures
# The cool-down grows (2, 4, 8 s) so that a replica that passes checks but fails requests
# costs few retries; it stays short so that a restarted replica is back within seconds
# (health checks of ejected replicas run every CHECK_EJECTED_S: back within ~10 s).
FIRST_COOLDOWN_S = 2.0
MAX_COOLDOWN_S = 8.0
CHECK_EVERY_S = 5.0
CHECK_EJECTED_S = 1.0


@dataclass
class ReplicaHealth:
    consecutive_failures: int = 0
    ejected_until: float | None = None  # None: in service
    cooldown_s: float = FIRST_COOLDOWN_S
    ejections: int = 0
    last_error: str | None = None


@dataclass
class HealthBook:
    replicas: Iterable[str]
    clock: Callable[[], float] = time.monotonic
    eject_after: int = EJECT_AFTER
    first_cooldown_s: float = FIRST_COOLDOWN_S
    max_cooldown_s: float = MAX_COOLDOWN_S
    state: dict[str, ReplicaHealth] = field(init=False)

    def __post_init__(self) -> None:
        self.state = {r: ReplicaHealth(cooldown_s=self.first_cooldown_s) for r in self.replicas}

    def available(self) -> list[str]:
        """The replicas in service now."""
        return [r for r, s in self.state.items() if s.ejected_until is None]

    def is_up(self, replica: str) -> bool:
        return self.state[replica].ejected_until is None

    def success(self, replica: str) -> None:
        """A request answered (its first byte came): the failure count starts again."""
        self.state[replica].consecutive_failures = 0

    def failure(self, replica: str, error: str) -> None:
        s = self.state[replica]
        s.consecutive_failures += 1
        s.last_error = error
        if s.ejected_until is None and s.consecutive_failures >= self.eject_after:
            self._eject(s, longer=False)

    def check_due(self, replica: str) -> bool:
        """Whether an ejected replica's cool-down is over, so that a check may take it back."""
        s = self.state[replica]
        return s.ejected_until is None or self.clock() >= s.ejected_until

    def checked(self, replica: str, ok: bool, error: str | None = None) -> None:
        """The result of an active health check."""
        s = self.state[replica]
        if ok:
            if s.ejected_until is not None and self.clock() >= s.ejected_until:
                s.ejected_until, s.cooldown_s = None, self.first_cooldown_s  # back in service
            if s.ejected_until is None:
                s.consecutive_failures = 0
            return
        s.last_error = error
        if s.ejected_until is None:
            self._eject(s, longer=False)
        elif self.clock() >= s.ejected_until:  # still failing after its cool-down: a longer one
            self._eject(s, longer=True)

    def _eject(self, s: ReplicaHealth, longer: bool) -> None:
        if longer:
            s.cooldown_s = min(self.max_cooldown_s, s.cooldown_s * 2)
        s.ejections += 1
        s.ejected_until = self.clock() + s.cooldown_s
