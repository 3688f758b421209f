"""User-group membership (``usergroups.users.list``, Tier 2), cached for a while.

Approvers may be user groups (``S…``). Their members are looked up when a decision needs them
and kept for ``ttl`` seconds; a group Slack cannot resolve counts as having no members, so an
unresolvable group fails closed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TypeVar

from bot.authz import GroupsUnknown
from bot.slack import SlackError, SlackPort

T = TypeVar("T")

log = logging.getLogger(__name__)


class GroupCache:
    """Who is in which user group, as far as Slack last said: every click on an approval whose
    approvers name a group needs it, and Slack answers ``usergroups.users.list`` at Tier 2."""

    def __init__(
        self, slack: SlackPort, clock: Callable[[], float] = time.time, ttl: float = 300.0
    ) -> None:
        self._slack = slack
        self._clock = clock
        self._ttl = ttl
        self._members: dict[str, tuple[frozenset[str], float]] = {}
        self._failed: set[str] = set()

    def members(self, group: str) -> frozenset[str] | None:
        """The group's members if known and fresh, else None (call ``resolve``)."""
        hit = self._members.get(group)
        if hit is None or self._clock() - hit[1] > self._ttl:
            return None
        return hit[0]

    def unresolved(self, group: str) -> bool:
        """Slack could not say who is in ``group`` the last time it was asked."""
        return group in self._failed

    async def resolve(self, groups: Iterable[str]) -> list[str]:
        """Look the groups up; returns the ones Slack could not resolve (cached as empty for
        a short while, so a click storm does not become a Tier 2 storm)."""
        failed = []
        for group in groups:
            try:
                found = frozenset(await self._slack.group_members(group))
                self._members[group] = (found, self._clock())
                self._failed.discard(group)
            except SlackError as exc:
                log.warning("user group %s could not be resolved: %s", group, exc.code)
                failed.append(group)
                self._failed.add(group)
                self._members[group] = (frozenset(), self._clock() - self._ttl + 30)
        return failed


async def with_groups(groups: GroupCache, attempt: Callable[[], Awaitable[T]]) -> T:
    """``attempt()``, and once more after looking up the user groups it said it needed (by
    raising GroupsUnknown). A second GroupsUnknown reaches the caller, whose rule decides how
    to fail closed (a group Slack cannot resolve counts as empty, so a retry rarely raises)."""
    try:
        return await attempt()
    except GroupsUnknown as exc:
        await groups.resolve(exc.groups)
    return await attempt()
