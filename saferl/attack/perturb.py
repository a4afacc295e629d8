"""Gradient attacks on the Blocker's input: how small a change to the frame turns a block into a pass.

The frames attacked are true blocks met by a random policy under the Blocker: steps the Blocker
blocked and the game's rule (the simulated human) would have blocked too. Each is attacked in the
Blocker's own input space (the preprocessed frame, pixels / 255) within an L-infinity budget of
``epsilon`` pixel levels (of 255): FGSM (one signed-gradient step of the full budget) and PGD (10
steps of 2.5 epsilon / 10, projected onto the budget), both lowering the block logit, then rounded to
whole pixel levels, as a real frame is. A block flips when the rounded input's logit falls below the
threshold. A flip is a false negative in the making: the same state, a few pixel levels away, passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from saferl.attack.rollout import Finding, MethodResult, overseen_envs
from saferl.attack.shift import random_walk, roll_out
from saferl.blocker.data import to_float
from saferl.errors import SaferlError
from saferl.games import Game

EPSILONS = (1, 2, 4, 8)
PGD_STEPS = 10
MAX_BLOCKS = 256


def logit_function(scorer: Any) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The differentiable block logit of a Blocker (or an ensemble's, combined by its rule), dropout off."""
    nets = [member.net for member in getattr(scorer, "members", [scorer])]
    for net in nets:
        net.eval()
    if getattr(scorer, "rule", "mean") == "max":
        return lambda x, actions: torch.stack([net(x, actions) for net in nets]).max(dim=0).values
    return lambda x, actions: torch.stack([net(x, actions) for net in nets]).mean(dim=0)


def attack(logit: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor, actions: torch.Tensor,
           epsilon: float, steps: int) -> torch.Tensor:
    """Inputs within ``epsilon`` (L-infinity, in [0, 1] units) of ``x`` that lower the block logit, rounded to /255."""
    alpha = epsilon if steps == 1 else 2.5 * epsilon / steps
    adversarial = x.clone()
    for _ in range(steps):
        adversarial.requires_grad_(True)
        grad, = torch.autograd.grad(logit(adversarial, actions).sum(), adversarial)
        with torch.no_grad():
            adversarial = adversarial - alpha * grad.sign()
            adversarial = torch.clamp(torch.min(torch.max(adversarial, x - epsilon), x + epsilon), 0.0, 1.0)
    return (adversarial.detach() * 255.0).round() / 255.0


def flips(scorer: Any, inputs: np.ndarray, actions: np.ndarray, epsilons: Sequence[int],
          device: str = "cpu") -> dict[str, np.ndarray]:
    """For FGSM and PGD: which inputs flip to a pass at each budget (len(epsilons) x B booleans)."""
    logit = logit_function(scorer)
    x = to_float(inputs, device)
    a = torch.as_tensor(actions, device=device)
    out = {}
    for name, steps in (("fgsm", 1), ("pgd", PGD_STEPS)):
        rows = []
        for epsilon in epsilons:
            adversarial = attack(logit, x, a, epsilon / 255.0, steps)
            with torch.no_grad():
                rows.append((logit(adversarial, a) < scorer.threshold_logit).cpu().numpy())
        out[name] = np.array(rows, bool).reshape(len(epsilons), len(inputs))
    return out


def _image(chw: np.ndarray) -> np.ndarray:
    """A Blocker input (C x H x W uint8, RGB or gray) as an RGB image."""
    image = chw.transpose(1, 2, 0)
    return np.repeat(image, 3, axis=2) if image.shape[2] == 1 else image


def perturb(scorer: Any, game: Game, steps: int, seed: int = 0, n_envs: int = 8, max_findings: int = 20,
            epsilons: Sequence[int] = EPSILONS, progress: bool = False) -> MethodResult:
    """Collect true blocks in ``steps`` random steps under the Blocker, then attack them (see the module docstring)."""
    from saferl.env.ale import game_action_names

    if scorer.preprocessing.stack != 1:
        raise SaferlError("perturb attacks Blockers of single frames; this one stacks "
                          f"{scorer.preprocessing.stack} (train one with --stack 1)")
    epsilons = sorted(int(e) for e in epsilons)
    source = f"FGSM / PGD-{PGD_STEPS}, L-inf <= {epsilons[-1]}/255"
    recorder = overseen_envs(scorer, game, source, n_envs, seed, 0, keep_blocks=MAX_BLOCKS, preprocess=False,
                             steps=steps, progress=progress)
    try:
        roll_out(recorder, random_walk(n_envs, len(game_action_names(game)), 4, seed), steps)
        collected = recorder.result("perturb")
    finally:
        recorder.close()
    extra: dict[str, Any] = {"blocks_attacked": len(recorder.blocks)}
    if not recorder.blocks:
        return MethodResult("perturb", source, collected.steps, collected.catastrophes, 0, 0, 0, [],
                            {**extra, "epsilons": []})
    frames = np.stack([frame for frame, _ in recorder.blocks])
    actions = np.array([action for _, action in recorder.blocks], np.int64)
    inputs = scorer.preprocessing.frames(frames)
    flipped = flips(scorer, inputs, actions, epsilons)
    extra["epsilons"] = [{"epsilon": e, "fgsm_flip_rate": float(flipped["fgsm"][k].mean()),
                          "pgd_flip_rate": float(flipped["pgd"][k].mean())} for k, e in enumerate(epsilons)]
    first = np.where(flipped["pgd"].any(axis=0), flipped["pgd"].argmax(axis=0), -1)  # smallest flipping budget
    extra["median_flip_epsilon"] = float(np.median(np.array(epsilons)[first[first >= 0]])) if (first >= 0).any() else None
    findings = []
    for i in np.flatnonzero(first >= 0)[:max_findings]:
        epsilon = epsilons[first[i]]
        adversarial = attack(logit_function(scorer), to_float(inputs[i:i + 1]), torch.as_tensor(actions[i:i + 1]),
                             epsilon / 255.0, PGD_STEPS)
        changed = (adversarial[0].numpy() * 255.0).round().astype(np.uint8)
        difference = np.clip(np.abs(changed.astype(int) - inputs[i].astype(int)) * (127 // epsilon), 0, 255)
        findings.append(Finding(source, -1, -1, int(actions[i]), float("nan"), True,
                                (_image(inputs[i]), _image(changed), _image(difference.astype(np.uint8))),
                                f"PGD flips it at epsilon {epsilon}/255"))
    found = int(flipped["pgd"][-1].sum())
    return MethodResult("perturb", source, collected.steps, collected.catastrophes, found, found, found, findings, extra)
