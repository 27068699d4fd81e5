"""Flow AWAC (FAWAC): a flow policy trained by advantage-weighted flow matching.

A baseline of the FQL paper (Park, Li, Levine, ICML 2025, arXiv 2502.02538, Sec. 5): AWAC (Nair, Gupta,
Dalal, Levine 2020) with its Gaussian actor replaced by a flow-matching policy, so that policy
extraction is a weighted regression instead of a likelihood (a flow has no cheap log-density). The FQL
paper's own FAWAC is not public; this follows the FQL-lineage JAX agents ``agents/fawac.py`` of
Sjtu-hyg/qgf (line numbers below, commit 21feb00), titanium-47/qam (63e724d) and jaehyeokdoo2/qflow
(703bda9), which compute the same losses. Three networks, a critic Q_φ (twin by default), a state value V_ψ and a
flow v_θ(s, x, t); each update takes ONE Adam step on L_Q + L_V + L_π, every term from the parameters
before the step (qgf fawac.py:L103-116, L127-136):
- critic: a′ = flow_K(s′, z′), y = r + γ m agg_i Q_φ̄ᵢ(s′, a′), L_Q = mean_i (Q_φᵢ(s, a) − y)²
          (qgf L38-48; AWAC's critic: TD with the policy's own next actions);
- value:  L_V = mean_B (agg_i Q_φ̄ᵢ(s, a) − V_ψ(s))², V regressed onto the TARGET critic at the dataset's
          action (qgf L50-55; qflow L39-46 with its ``q_agg``), an estimate of V^β, not IQL's expectile;
- weights: A(s, a) = agg_i Q_φᵢ(s, a) − V_ψ(s) with the ONLINE critic (qgf L89-92, qflow L70-75),
          w = min(exp(β A), w_max), no gradient through w (qgf L93-94);
- policy: L_π = mean_B w · mean_d (v_θ(s, x_t, t) − (a − x₀))² (AWR on the flow-matching loss, qgf L77-98).
Acting: one flow sample (K Euler steps from fresh noise), clipped to [-1, 1] (qgf L139-161).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from algos.kit.agent import Batch
from algos.kit.critics import QAggregation, aggregate, td_critic_loss
from algos.kit.flow_agents import FlowTDAgent
from algos.kit.flows import flow_matching_loss, flow_policy_actions
from algos.kit.networks import Critic, soft_update
from algos.kit.presets import FQL_CODE_ANTMAZE_REWARDS, FQL_CODE_OGBENCH_DISCOUNTS, FQLCodeConfig, cpu_networks
from algos.kit.registry import register
from algos.kit.seeds import SeedRandom, seed_mean


@dataclass
class FAWACConfig(FQLCodeConfig):
    """FAWAC with the FQL-lineage agents' get_config() (qgf agents/fawac.py:L231-258): 4×512 GELU MLPs,
    LayerNorm on the critic and value only (``value_layer_norm``), one Adam at 3e-4 for all three networks,
    batch 256, γ 0.99, τ 0.005, K = 10, β (``inv_temp``) 10, weights clipped at 100. Twin Q with the mean
    over heads as qflow's (``num_ensembles=2``, ``q_agg='mean'``), the FQL code's critic; qgf and qam's
    copies use a 10-head ensemble with the backup mean − 0.5·std, the QAM paper's setting for every agent
    it runs, available as ``--set num_qs=10 backup_std_penalty=0.5`` (results/baselines/fawac.md). β was
    tuned per task by the FQL paper and is not public; retune with ``--set awr_temperature=``."""

    awr_temperature: float = 10.0  # β, the inverse temperature of the advantage weights exp(β A) (qgf L255)
    max_weight: float = 100.0  # clip of the advantage weights (qgf L94)
    sampling_steps: int = 10  # K, Euler steps of every flow sample (qgf L252)
    q_agg: QAggregation = "mean"  # over the critic heads: in the TD target, V's regression target and A (qflow)
    num_qs: int = 2  # critic heads (qflow, the FQL code: 2; qgf and qam: 10, L248)
    backup_std_penalty: float = 0.0  # ρ: TD target agg − ρ·std over the target heads (qgf and qam: 0.5, L41, L249)
    value_hidden_dims: tuple[int, ...] = (512, 512, 512, 512)  # the critic's and V's (qgf L178-193)
    critic_layer_norm: bool = True  # LayerNorm in the critic and V (qgf ``value_layer_norm``, L243)
    actor_layer_norm: bool = False
    critic_lr: float = 3e-4  # the critic's and V's (one optax Adam at ``lr`` for all, qgf L218)


@register
class FAWAC(FlowTDAgent):
    name = "fawac"
    config_class = FAWACConfig
    policy_update_parts = ("policy",)
    profiles = {"cpu": cpu_networks()}
    presets = (
        *FQL_CODE_ANTMAZE_REWARDS, *FQL_CODE_OGBENCH_DISCOUNTS,
        # flowbench's toy: the modes' Q differ by 0.5, so β must be large for the weights to separate them.
        # β 300 with A = Q − V scored 94.0 / 93.5 / 95.0 (seeds 0 / 1 / 2, 3000 updates, 2.5–3.3 % off the
        # support, none in the worse mode; results/baselines/fawac.md).
        ("toy/*", {"awr_temperature": 300.0}),
    )

    def __init__(self, obs_dim: int, act_dim: int, config: FAWACConfig, device: torch.device | str = "cpu",
                 num_seeds: int = 1):
        super().__init__(obs_dim, act_dim, config, device, num_seeds)
        c = config
        # V(s): the critic's MLP with one head (qgf L186-193)
        self.value = Critic(obs_dim, 0, c.value_hidden_dims, None, c.critic_layer_norm, c.activation,
                            seeds=num_seeds).to(self.device)
        self.opt = self.adam([(self.critic.parameters(), c.critic_lr), (self.value.parameters(), c.critic_lr),
                              (self.flow.parameters(), c.actor_lr)])

    def modules(self) -> dict[str, torch.nn.Module]:
        return {**super().modules(), "value": self.value}

    def value_loss(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(L_V ``[S]``, V(s) ``[S, B]``): V regressed onto agg_i of the target critic at (s, a_data).
        qgf averages (Q̄ᵢ − V)² over the heads, whose gradient in V is that of (mean_i Q̄ᵢ − V)²."""
        with torch.no_grad():
            target = aggregate(self.target_critic(batch.obs, batch.actions), self.config.q_agg)
        v = self.value(batch.obs)
        return seed_mean((target - v) ** 2), v

    def advantage_weights(self, batch: Batch, q_data: torch.Tensor | None = None,
                          v: torch.Tensor | None = None) -> torch.Tensor:
        """w = min(exp(β (agg_i Q_φᵢ(s, a) − V_ψ(s))), w_max) ``[S, B]``, no gradient; ``q_data`` (Q(s, a)
        ``[S, E, B]``) and ``v`` (V(s) ``[S, B]``) when the caller has them already."""
        c = self.config
        with torch.no_grad():
            q_data = self.critic(batch.obs, batch.actions) if q_data is None else q_data.detach()
            v = self.value(batch.obs) if v is None else v.detach()
            advantage = aggregate(q_data, c.q_agg) - v
            return torch.exp(c.awr_temperature * advantage).clamp(max=c.max_weight)

    def policy_loss(self, batch: Batch, q_data: torch.Tensor | None = None,
                    v: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        weights = self.advantage_weights(batch, q_data, v)
        return flow_matching_loss(self.flow, batch.obs, batch.actions, self.rng, weights), weights

    def policy_train_step(self, batch: Batch) -> torch.Tensor:
        return self.minimize(self.opt, self.policy_loss(batch)[0])

    def train_step(self, batch: Batch) -> dict[str, torch.Tensor]:
        c = self.config
        with torch.no_grad():
            next_actions = flow_policy_actions(self.flow, batch.next_obs, c.sampling_steps, self.rng)
        critic_loss, q = td_critic_loss(self.critic, self.target_critic, batch, next_actions, c.discount, c.q_agg,
                                        c.backup_std_penalty)
        value_loss, v = self.value_loss(batch)
        policy_loss, weights = self.policy_loss(batch, q, v)
        soft_update(self.target_critic, self.critic, c.tau)  # toward the pre-step critic (qgf L118-124, L134)
        self.minimize(self.opt, critic_loss + value_loss + policy_loss)
        return {"critic_loss": critic_loss.detach(), "value_loss": value_loss.detach(),
                "policy_loss": policy_loss.detach(), "q_mean": seed_mean(q).detach(),
                "adv_weight_mean": seed_mean(weights)}

    def select_actions(self, obs: torch.Tensor, rng: SeedRandom) -> torch.Tensor:
        return flow_policy_actions(self.flow, obs, self.config.sampling_steps, rng)
