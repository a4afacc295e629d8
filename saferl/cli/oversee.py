"""``saferl games``, ``saferl oversee`` and ``saferl evaluate``: the games, a policy run under oversight, and a
saved agent played."""

from __future__ import annotations

import argparse
import json

from saferl.cli.common import human_options, print_summary


def cmd_games(args: argparse.Namespace) -> int:
    from saferl.games import GAMES

    rows = {name: game.describe() for name, game in GAMES.items()}
    for name, row in rows.items():
        print(f"{name}  ({row['env_id']})")
        print(f"  catastrophe:   {row['catastrophe']}")
        print(f"  blocking rule: {row['blocking_rule']}")
        if row.get("episode_ends"):
            print(f"  episode ends:  {row['episode_ends']}")
    if args.json:
        print(json.dumps({"games": rows}))
    return 0


def cmd_oversee(args: argparse.Namespace) -> int:
    from saferl.experiment.oversee import oversee

    options = {**dict(args.overseer_option or []), **human_options(args, args.overseer)}
    summary = oversee(args.game, args.overseer, policy=args.policy, mode=args.mode, penalty=args.penalty,
                      steps=args.steps, seed=args.seed, out=args.out, overseer_options=options,
                      progress=not args.no_progress)
    print_summary(f"oversee {summary['game']} with {args.overseer} ({args.mode})", summary, args.json)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from saferl.experiment.evaluate import evaluate_agent

    summary = evaluate_agent(args.agent_dir, args.game, overseer=args.overseer, episodes=args.episodes,
                             deterministic=not args.stochastic, seed=args.seed, video=args.video,
                             max_frames=args.max_frames, progress=not args.no_progress)
    print_summary(f"agent {args.agent_dir} on {summary['game']} with {args.overseer}", summary, args.json)
    return 0
