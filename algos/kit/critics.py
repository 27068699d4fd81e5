"""Critics the algorithms share, and the TD target they all regress on.

- ``td_target``: y = r + γ m V′, the one Bellman target every Q-learning agent builds (V′ is its own next-state
  value: a target critic at the policy's next action, or IQL's V(s′)).
- ``td_critic_loss``: the TD critic of the agents whose next actions come from their own policy (FQL, FBRAC,
  FAWAC): y = r + γ m agg_i Q_φ̄ᵢ(s′, a′), agg = mean or min over the target ensemble;
  L_Q = mean_i (Q_φᵢ(s, a) − y)², averaged over the heads as the FQL code does.
- ``InSampleCritic``: IQL's twin Q, its target and an expectile value, never querying an action outside the
  dataset (IQL, IFQL, FlowQ, QIPO, IDQL, SRPO).
"""

from __future__ import annotations

import copy
from typing import Iterable, Literal, Sequence

import torch
from torch import nn

from algos.kit.agent import Batch
from algos.kit.networks import Critic, soft_update
from algos.kit.seeds import seed_mean

QAggregation = Literal["mean", "min"]


def td_target(batch: Batch, next_value: torch.Tensor, discount: float) -> torch.Tensor:
    """y = r + γ m V′ ``[S, B]`` (m = 0 where the episode truly ended), from next-state values ``[S, B]``."""
    return batch.rewards + discount * batch.masks * next_value


def aggregate(qs: torch.Tensor, q_agg: QAggregation) -> torch.Tensor:
    """agg_i over the heads axis of ``[S, E, B]`` → ``[S, B]``."""
    return qs.min(1).values if q_agg == "min" else qs.mean(1)


def td_critic_loss(critic: Critic, target_critic: Critic, batch: Batch, next_actions: torch.Tensor, discount: float,
                   q_agg: QAggregation = "mean", std_penalty: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_Q ``[S]``, Q(s, a) ``[S, E, B]``) for a batch ``[S, B, ...]`` and next actions ``[S, B, act]``;
    ``std_penalty`` ρ > 0 subtracts ρ times the heads' (population) std from the aggregate."""
    with torch.no_grad():
        next_qs = target_critic(batch.next_obs, next_actions)
        next_q = aggregate(next_qs, q_agg)
        if std_penalty > 0:
            next_q = next_q - std_penalty * next_qs.std(1, unbiased=False)
        target = td_target(batch, next_q, discount)
    q = critic(batch.obs, batch.actions)
    return seed_mean((q - target[:, None]) ** 2), q


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """E[ |τ − 1(u < 0)| u² ] per seed: ``diff`` ``[S, ...]`` → ``[S]``."""
    weight = torch.where(diff > 0, expectile, 1.0 - expectile)
    return seed_mean(weight * diff**2)


class InSampleCritic(nn.Module):
    """IQL's in-sample critic as one module (IQL, IFQL, FlowQ, QIPO): twin Q, its Polyak target and an
    expectile value, never querying an action outside the dataset. ``seeds`` is the leading seed axis
    S of every parameter; ``q``/``target_q`` return ``[S, 2, B]``, ``value`` ``[S, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden_dims: Sequence[int], layer_norm: bool, activation: str,
                 expectile: float, discount: float, seeds: int = 1):
        super().__init__()
        self.expectile, self.discount = expectile, discount
        self.q = Critic(obs_dim, act_dim, hidden_dims, 2, layer_norm, activation, seeds=seeds)
        self.target_q = copy.deepcopy(self.q).requires_grad_(False)
        self.value = Critic(obs_dim, 0, hidden_dims, None, layer_norm, activation, seeds=seeds)

    def value_loss(self, batch: Batch) -> torch.Tensor:
        """L_V ``[S]``: V toward the τ-expectile of the target critic's min_i Q(s, a)."""
        with torch.no_grad():
            target_q = self.target_q(batch.obs, batch.actions).min(1).values
        return expectile_loss(target_q - self.value(batch.obs), self.expectile)

    def q_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_Q ``[S]`` summed over the heads, Q(s, a) ``[S, 2, B]``), with the TD target r + γ m V(s′)."""
        with torch.no_grad():
            target = td_target(batch, self.value(batch.next_obs), self.discount)
        q = self.q(batch.obs, batch.actions)
        return ((q - target[:, None]) ** 2).mean(-1).sum(-1), q

    def losses(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(L_V, L_Q, Q(s, a)) from the same parameters, for one joint optimiser step."""
        return self.value_loss(batch), *self.q_loss(batch)

    @torch.no_grad()
    def advantage(self, obs: torch.Tensor, actions: torch.Tensor, target: bool) -> torch.Tensor:
        """min_i Q(s, a) − V(s) ``[S, B]``, from the target (``target``) or the online critic."""
        q = (self.target_q if target else self.q)(obs, actions).min(1).values
        return q - self.value(obs)

    def param_groups(self, critic_lr: float, value_lr: float) -> list[tuple[Iterable[nn.Parameter], float]]:
        """Q's and V's parameters at their learning rates, as ``Agent.adam`` takes parameter groups."""
        return [(self.q.parameters(), critic_lr), (self.value.parameters(), value_lr)]

    def update_target(self, tau: float) -> None:
        soft_update(self.target_q, self.q, tau)
