"""The emulator under every env: ALE with exact replay, ground truth, the vec backends and env factories.

Depends on :mod:`saferl.games` only."""
