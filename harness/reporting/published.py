"""Published scores to print next to measured ones (``flowbench report --published``), with their sources.

Only numbers read in a source are here. All come from the FQL paper (Park, Li, Levine 2025, "Flow
Q-Learning", ICML; 8 seeds; normalised score for D4RL, success rate in % for OGBench):
- D4RL: the paper ran d4rl's ``antmaze-*-v2`` and ``pen-*-v1``; Minari's ports of the same data are
  ``D4RL/antmaze/*-v1`` and ``D4RL/pen/*-v2``, so the numbers are keyed by those ids. FQL on all six
  antmaze tasks and three pen tasks; the baselines on antmaze umaze and large-play.
- OGBench: the paper's main table gives FQL's average over the five singletask tasks of each
  environment, not per task. They are keyed by environment and shown on every task row of it
  (``ogbench/<env>-singletask-task<i>-v0``, or the default task), marked as an average.
"""

from __future__ import annotations

import re

FQL_PAPER = "Park, Li, Levine (2025), Flow Q-Learning, 8 seeds"

# algorithm label -> Minari id (D4RL) or OGBench environment -> score
D4RL_SCORES: dict[str, dict[str, float]] = {
    "fql": {"D4RL/antmaze/umaze-v1": 96, "D4RL/antmaze/umaze-diverse-v1": 89, "D4RL/antmaze/medium-play-v1": 78,
            "D4RL/antmaze/medium-diverse-v1": 71, "D4RL/antmaze/large-play-v1": 84,
            "D4RL/antmaze/large-diverse-v1": 83, "D4RL/pen/human-v2": 53, "D4RL/pen/cloned-v2": 74,
            "D4RL/pen/expert-v2": 142},
    **{algo: {"D4RL/antmaze/umaze-v1": umaze, "D4RL/antmaze/large-play-v1": large}
       for algo, umaze, large in [("bc", 55, 0), ("iql", 77, 42), ("rebrac", 98, 52), ("idql", 94, 64),
                                  ("srpo", 97, 54), ("cac", 66, 0), ("fawac", 90, 10), ("fbrac", 94, 32),
                                  ("ifql", 92, 55)]},
}
OGBENCH_AVERAGES: dict[str, dict[str, float]] = {
    "fql": {"antmaze-large-navigate": 79, "antmaze-giant-navigate": 9, "humanoidmaze-medium-navigate": 58,
            "antsoccer-arena-navigate": 60, "cube-single-play": 96, "cube-double-play": 29, "scene-play": 56,
            "puzzle-3x3-play": 30, "puzzle-4x4-play": 17},
}
SOURCES = {algo: FQL_PAPER for algo in {*D4RL_SCORES, *OGBENCH_AVERAGES}}
OGBENCH_TASK = re.compile(r"^ogbench/(?P<env>.+)-singletask(-task\d+)?-v\d+$")


def published_score(algo: str, dataset: str) -> tuple[float, bool] | None:
    """(score, whether it is an average over the environment's tasks) for a run label and dataset id, if published."""
    if dataset in D4RL_SCORES.get(algo, {}):
        return float(D4RL_SCORES[algo][dataset]), False
    match = OGBENCH_TASK.match(dataset)
    if match and match["env"] in OGBENCH_AVERAGES.get(algo, {}):
        return float(OGBENCH_AVERAGES[algo][match["env"]]), True
    return None
