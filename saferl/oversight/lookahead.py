"""The look-ahead overseer: a game-agnostic oracle that simulates the future on the ALE."""

from __future__ import annotations

from collections.abc import Sequence

from saferl.errors import SaferlError
from saferl.games import GameState
from saferl.oversight.decision import (
    ALLOW,
    BaseOverseer,
    Decision,
    StepContext,
    check_preferred,
    preferred_actions,
)


class LookaheadOverseer(BaseOverseer):
    """Blocks an action when simulating it leads to a catastrophe that a safe alternative avoids.

    The proposed action is simulated, then the fallback policy (the game's safe action) for
    ``horizon`` steps in all, with ALE clone/restore (RNG included, so sticky actions replay
    exactly). If a catastrophe follows, the candidates (``prefer``, then the game's safe action, then
    every other action) are simulated the same way; the first one with no catastrophe is executed
    instead. When none avoids it, the action is allowed: the catastrophe cannot be prevented.

    :param horizon: agent steps simulated per candidate (None: the game's ``lookahead_horizon``).
    :param prefer: actions to try first as the replacement, the least disruptive first (Pong: ``[0]``, NOOP,
        leaves the paddle where it is where the safe action, UP, would push it away from the ball).
    """

    name = "lookahead"
    requires = frozenset({"emulator"})

    def __init__(self, horizon: int | None = None, prefer: int | Sequence[int] = ()) -> None:
        if horizon is not None and horizon < 1:
            raise SaferlError(f"--horizon must be at least 1, not {horizon}")
        self.horizon = horizon
        self.prefer = preferred_actions(prefer)

    def review(self, context: StepContext, action: int) -> Decision:
        emulator = context.emulator
        if emulator is None:
            raise SaferlError("the lookahead overseer needs in-process envs (it simulates them); use DummyVecEnv")
        game = context.game
        horizon = self.horizon or game.lookahead_horizon

        def fallback(state: GameState) -> int:
            return game.safe_action(state, 0)

        if emulator.first_catastrophe(game, action, fallback, horizon) is None:
            return ALLOW
        check_preferred(self.prefer, emulator.num_actions)
        order = [*self.prefer, game.safe_action(context.state, action), *range(emulator.num_actions)]
        candidates = [a for a in dict.fromkeys(order) if a != action and 0 <= a < emulator.num_actions]
        for candidate in candidates:
            if emulator.first_catastrophe(game, candidate, fallback, horizon) is None:
                return Decision(block=True, safe_action=candidate, score=1.0)
        return Decision(block=False, score=1.0)
