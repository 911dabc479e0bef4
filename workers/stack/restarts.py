"""The supervisor's restart policy: the back-off between starts of a part that died, and when it is down."""

from __future__ import annotations

from dataclasses import dataclass

from workers.settings import Settings


@dataclass(frozen=True)
class RestartPolicy:
    """When the supervisor starts a part that died again, and when the part counts as down.

    Each crash waits `backoff_min_s`, doubled for each crash in a row, at most `backoff_max_s`;
    the supervisor never gives up. A crash after the part had been healthy for `healthy_reset_s`
    starts the count over (one crash, the shortest wait). A start that exits or does not become
    healthy within the part's start timeout counts as a crash. The part is down, until it is
    healthy again, at every `down_after`-th crash in a row (it keeps dying, even if it comes
    back in between: a part that keeps flapping is reported again every `down_after` crashes),
    or when `down_after` starts in a row have failed since it was last healthy (it does not come
    back). Settings `supervisor_*` (docs/configuration.md).
    """

    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    healthy_reset_s: float = 300.0
    down_after: int = 5

    @classmethod
    def from_settings(cls, s: Settings) -> RestartPolicy:
        return cls(
            backoff_min_s=s.supervisor_backoff_min_s,
            backoff_max_s=max(s.supervisor_backoff_max_s, s.supervisor_backoff_min_s),
            healthy_reset_s=s.supervisor_healthy_reset_s,
            down_after=s.supervisor_down_after,
        )

    def delay(self, crash_streak: int) -> float:
        """Seconds to wait before the next start, after the `crash_streak`-th crash in a row."""
        return float(min(self.backoff_min_s * 2 ** min(max(crash_streak - 1, 0), 32), self.backoff_max_s))

    def streak_after_crash(self, streak: int, healthy_for: float | None) -> int:
        """The crash count once a part that had been healthy for `healthy_for` seconds (None: it
        never became healthy) dies."""
        return 1 if healthy_for is not None and healthy_for >= self.healthy_reset_s else streak + 1

    def is_down(self, crash_streak: int, failed_starts: int) -> bool:
        return crash_streak % self.down_after == 0 or failed_starts >= self.down_after
