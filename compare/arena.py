"""Blind arena battles: two models drawn from a person's pool answer one prompt; the names stay here until the vote.

A battle's pairing lives only in this server-side table, keyed by a random id; the browser and API clients hold
just that id, so nothing they receive before voting can name the models.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from errors import NotFound, UserError


class PoolError(UserError):
    """The pool cannot make a battle (fewer than two different models)."""


@dataclass
class Battle:
    id: str
    owner: str
    model_a: str
    model_b: str
    prompt: str = ""
    settings: dict = field(default_factory=dict)
    answers: list[tuple[str, dict]] = field(default_factory=list)  # (text, stats) of A and B, kept for History
    answered: bool = False
    created: float = field(default_factory=time.time)


class Arena:
    """Battles waiting for a vote, per owner.

    Args:
        ttl_s: a battle nobody votes on is forgotten after this long.
        max_battles: most battles kept; the oldest go first.
    """

    def __init__(self, ttl_s: float = 6 * 3600, max_battles: int = 10_000):
        self.ttl_s, self.max_battles = ttl_s, max_battles
        self._battles: dict[str, Battle] = {}
        self._lock = threading.Lock()
        self._random = secrets.SystemRandom()  # a predictable draw would let someone guess the pairing

    def draw(self, owner: str, pool: list[str]) -> Battle:
        """A new battle between two different models of `pool`, in random order."""
        models = list(dict.fromkeys(m.strip() for m in pool if m and m.strip()))
        if len(models) < 2:
            raise PoolError(f"the arena needs at least two different models in the pool, got {len(models)}"
                            f"{': ' + models[0] if models else ''}; add another model")
        a, b = self._random.sample(models, 2)
        battle = Battle(secrets.token_urlsafe(12), owner, a, b)
        with self._lock:
            self._forget_old()
            self._battles[battle.id] = battle
        return battle

    def get(self, owner: str, battle_id: str) -> Battle:
        """The owner's battle; NotFound for an unknown, expired, already voted or someone else's id."""
        with self._lock:
            battle = self._battles.get(str(battle_id or ""))
        if battle is None or battle.owner != owner:
            raise NotFound(f"no open battle {battle_id!r} of yours (it was voted on, expired, or never started); "
                           f"start a new battle")
        return battle

    def settle(self, owner: str, battle_id: str) -> Battle:
        """Take the battle out for its vote; it must have both answers."""
        battle = self.get(owner, battle_id)
        if not battle.answered:
            raise UserError("both answers must finish before you vote; wait for them (or start a new battle)")
        with self._lock:
            self._battles.pop(battle.id, None)
        return battle

    def discard(self, battle_id: str) -> None:
        with self._lock:
            self._battles.pop(battle_id, None)

    def _forget_old(self) -> None:
        cutoff = time.time() - self.ttl_s
        for key in [k for k, b in self._battles.items() if b.created < cutoff]:
            del self._battles[key]
        while len(self._battles) >= self.max_battles:
            del self._battles[next(iter(self._battles))]
