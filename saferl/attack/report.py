"""The attack report: ``report.md`` (markdown tables), ``attack.json`` and the frames of what was found, as PNGs."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from saferl.attack.rollout import Finding, MethodResult
from saferl.experiment.report import format_table

COLUMNS = {"method": "method", "source": "policy / attack", "steps": "steps", "catastrophes": "catastrophes",
           "false_negatives": "false negatives", "per_1000_steps": "per 1,000 steps", "incidents": "incidents",
           "rule_would_block": "incidents the rule would block"}
PERTURB_COLUMNS = {"epsilon": "epsilon (/255)", "fgsm_flip_rate": "FGSM flip rate", "pgd_flip_rate": "PGD flip rate"}
SCALE = 2


def totals(results: Sequence[MethodResult]) -> dict[str, dict[str, Any]]:
    """Per method: steps, catastrophes, false negatives, incidents and false negatives per 1,000 steps."""
    out: dict[str, dict[str, Any]] = {}
    for result in results:
        row = out.setdefault(result.method, {"steps": 0, "catastrophes": 0, "false_negatives": 0, "incidents": 0,
                                             "rule_would_block": 0})
        for key in row:
            row[key] += getattr(result, key)
    for row in out.values():
        row["per_1000_steps"] = round(1000.0 * row["false_negatives"] / row["steps"], 3) if row["steps"] else 0.0
    return out


def save_frames(findings: Sequence[Finding], folder: Path, prefix: str, action_names: Sequence[str]) -> list[str]:
    """Write each finding's images side by side, enlarged, as ``folder/<prefix>-<k>.png``; return the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for k, finding in enumerate(findings):
        height = max(image.shape[0] for image in finding.images)
        padded = [np.pad(image, ((0, height - image.shape[0]), (0, 4), (0, 0))) for image in finding.images]
        strip = np.repeat(np.repeat(np.concatenate(padded, axis=1), SCALE, axis=0), SCALE, axis=1)
        action = action_names[finding.proposed_action] if 0 <= finding.proposed_action < len(action_names) else "?"
        text = f"{action} {finding.note}".strip()
        strip = np.ascontiguousarray(strip[:, :, ::-1])  # RGB -> BGR for OpenCV
        cv2.putText(strip, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        name = f"{prefix}-{k:03d}.png"
        cv2.imwrite(str(folder / name), strip)
        names.append(name)
    return names


def write_attack_report(results: Sequence[MethodResult], out: str | Path, blocker: str, game: str,
                        action_names: Sequence[str]) -> dict[str, Any]:
    """Write ``report.md``, ``attack.json`` and ``frames/*.png`` into ``out``; return the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, frames = [], {}
    for k, result in enumerate(results):
        names = save_frames(result.findings, out / "frames", f"{result.method}-{k}", action_names)
        rows.append({**{key: value for key, value in result.row().items() if key != "epsilons"}, "frames": len(names)})
        frames[f"{result.method}-{k}"] = names
    summary = {"blocker": blocker, "game": game, "methods": totals(results), "runs": rows, "out": str(out)}
    perturbed = [result.extra["epsilons"] for result in results if result.method == "perturb" and result.extra.get("epsilons")]
    if perturbed:
        summary["perturb"] = perturbed[0]
    (out / "attack.json").write_text(json.dumps({**summary, "frames": frames}, indent=2) + "\n")
    (out / "report.md").write_text(_markdown(summary, frames))
    return summary


def _markdown(summary: dict[str, Any], frames: dict[str, list[str]]) -> str:
    parts = [f"# Attacks on the Blocker `{summary['blocker']}` ({summary['game']})",
             "False negatives: steps holding a catastrophe (the game's ground truth) that the Blocker let through, "
             "with the Blocker enforcing its blocks (`replace`). An incident is a run of them in one env; the rule "
             "column counts the incidents whose first step the game's blocking rule (the simulated human) blocks. "
             "For `perturb` they are true blocks that a perturbation within the budget turns into passes; its "
             "steps and catastrophes are those of the random play that collected the blocks.",
             "## Per method\n\n" + format_table([{"method": m, **row} for m, row in summary["methods"].items()],
                                                {k: v for k, v in COLUMNS.items() if k != "source"}),
             "## Per policy or attack\n\n" + format_table(summary["runs"], {**COLUMNS, "frames": "PNGs"})]
    if "perturb" in summary:
        parts.append("## Perturbations: share of true blocks flipped to a pass\n\n"
                     + format_table(summary["perturb"], PERTURB_COLUMNS))
    shown = [f"![{name}](frames/{name})" for names in frames.values() for name in names[:4]]
    if shown:
        parts.append("## Frames (the Blocker's view, then the next frame; for perturb: input, perturbed, "
                     "difference)\n\n" + "\n".join(shown))
    return "\n\n".join(parts) + "\n"
