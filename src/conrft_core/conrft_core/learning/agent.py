"""ConRFT / CO-RFT agent: the consistency policy head and the chunked critic, with the two stages' losses.

Both stages optimise the same objective with different weights (ConRFT, Sec. IV):

    critic:  L_Q  = E[(Q_i(s, a_{t:t+H}) - y)^2]  (+ alpha * Cal-QL term, offline stage "Cal-ConRFT" only)
    actor:   L_pi = beta * L_BC(consistency) - eta * mean Q(s, pi(s))

y is the chunked TD target of `conrft_core.learning.critic` (H = 1: ConRFT; H > 1: CO-RFT chunked TD). The online
stage "HIL-ConRFT" drops the Cal-QL term (unless critic.cql_online) and changes (beta, eta); its batches mix the
demonstration + intervention buffer and the online buffer 50/50 (RLPD), with `critic_updates_per_actor` critic
steps per actor step, and it starts with fresh optimiser state.

Stage weights come from a recipe: `released` (the authors' scripts: offline (1.0, 0.0), online (0.1, 1.0)) or
`paper` (the paper's table: (1.0, 0.1), (0.5, 1.0)); `offline` / `online` set explicitly override it.
`q_normalize` divides the Q term by the batch's mean |Q| (as TD3+BC does; neither ConRFT reading does).

Three switches beyond both readings stop the collapse of the online stage on camera images (results/README.md,
"Why HIL-ConRFT collapsed on camera images"): the policy acts from the top noise level, which gets ~1/M of the
consistency loss, so with eta >> beta the Q term alone decides the executed action and drives it to the action
box's corners within one episode; `action_anchor` adds ||pi(s) - a||^2 on that action to the imitation term.
`critic.tau` 0.05 (released 0.005) lets the critic's values reach the demonstrations' returns within the short
offline stage (with the released bound an under-estimating critic gets no conservative push at all), and
`actor_ema` acts with a Polyak average of the actor, which removes the late decline of the online curve.

The agent works on state vectors. In the frozen mode (ConRFT) the caller turns observations into features
(frozen VLA embeddings and proprio, or state features) and batches carry them as `state` / `next_state`; in the
full fine-tuning mode (CO-RFT) the agent owns `encoders` (`conrft_core.learning.finetune`) and batches carry
observation windows (`obs` / `next_obs`): the backbone is trained by the actor losses, the critic's own image
encoder by the critic loss, and the bootstrap uses that encoder's target copy.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import torch
from torch import nn

from conrft_core.learning.consistency import ConsistencyConfig, ConsistencyHead
from conrft_core.learning.critic import ChunkedCritic, CriticConfig, calql_penalty, chunked_td_target
from conrft_core.learning.nets import gradient_step, polyak

if TYPE_CHECKING:
    from conrft_core.learning.finetune import FinetuneEncoders


@dataclass
class StageWeights:
    beta: float  # weight of the consistency BC loss
    eta: float  # weight of the Q term

    def __post_init__(self) -> None:
        if self.beta < 0 or self.eta < 0:
            raise ValueError(f"stage weights beta and eta must be >= 0, got beta={self.beta}, eta={self.eta}")


# recipe -> (offline, online) stage weights
RECIPES = {"released": ((1.0, 0.0), (0.1, 1.0)), "paper": ((1.0, 0.1), (0.5, 1.0))}


@dataclass
class AgentConfig:
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    recipe: Literal["released", "paper"] = "released"  # where the stage weights come from (RECIPES)
    offline: StageWeights | None = None  # None: the recipe's
    online: StageWeights | None = None
    q_normalize: bool = False  # divide the actor's Q term by the batch's mean |Q|
    # Weight of the executed-action anchor ||pi(s) - a||^2 (mean over dimensions) inside the BC term; 0 in the
    # released code, where only ~1/M of the consistency loss lands on the top noise level the policy acts from.
    action_anchor: float = 100.0
    # Which rows of an online batch the BC terms imitate: all (released code: the online half too, so the policy
    # also imitates its own past actions) or demos (the demonstration + intervention half only).
    bc_data: Literal["all", "demos"] = "all"
    # > 0: the policy acts (rollouts, evaluation, the broadcast weights) with a Polyak average of the actor at
    # this rate per actor update, as consistency models sample from an EMA copy; 0: the trained actor (released).
    actor_ema: float = 0.005
    # False: the actor's Q term does not reach the gripper command (the last action dimension), which is learned by
    # imitation alone; True: it does (both ConRFT readings). HIL-SERL gives the gripper a critic of its own.
    q_gripper: bool = True
    bc_mask_padding: bool = True  # BC ignores chunk steps past the episode end (Q-chunking)
    fresh_online_optimizers: bool = True  # new Adam state at the offline -> online switch (released code)
    # > 0: (beta, eta) move linearly from the offline to the online stage weights over this many online actor
    # updates instead of switching at once (both ConRFT readings switch at once).
    online_ramp_updates: int = 0
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    critic_updates_per_actor: int = 2
    grad_clip: float = 10.0

    def __post_init__(self) -> None:
        offline, online = RECIPES[self.recipe]
        self.offline = self.offline or StageWeights(*offline)
        self.online = self.online or StageWeights(*online)
        if self.bc_data not in ("all", "demos"):
            raise ValueError(f"agent.bc_data must be all or demos, got {self.bc_data!r}")
        if not 0 <= self.actor_ema <= 1:
            raise ValueError(f"agent.actor_ema must be in [0, 1], got {self.actor_ema}")
        if self.action_anchor < 0:
            raise ValueError(f"agent.action_anchor must be >= 0, got {self.action_anchor}")
        if self.actor_lr <= 0 or self.critic_lr <= 0:
            raise ValueError("agent.actor_lr and agent.critic_lr must be positive")
        if self.critic_updates_per_actor < 1:
            raise ValueError("agent.critic_updates_per_actor must be >= 1")
        if self.online_ramp_updates < 0:
            raise ValueError(f"agent.online_ramp_updates must be >= 0, got {self.online_ramp_updates}")

    @property
    def horizon(self) -> int:
        return self.consistency.horizon


class ConRFTAgent(nn.Module):
    def __init__(self, state_dim: int, cfg: AgentConfig, encoders: FinetuneEncoders | None = None):
        super().__init__()
        self.cfg = cfg
        self.encoders = encoders
        self.actor = ConsistencyHead(state_dim, cfg.consistency)
        # actor_ema > 0: the Polyak-averaged copy that acts (full fine-tuning: on the live backbone's features)
        self.actor_average = copy.deepcopy(self.actor).requires_grad_(False) if cfg.actor_ema > 0 else None
        critic_dim = state_dim if encoders is None else encoders.critic.dim
        self.critic = ChunkedCritic(critic_dim, self.actor.chunk_dim, cfg.critic)
        self.actor_groups = [{"params": list(self.actor.parameters())}]
        self.critic_params = list(self.critic.members.parameters())
        if encoders is not None:
            self.actor_groups.append({"params": list(encoders.backbone.parameters()),
                                      "lr": encoders.cfg.backbone_lr})
            self.critic_params += list(encoders.critic.parameters())
        self.actor_params = [p for g in self.actor_groups for p in g["params"]]

    # The optimisers are built at their first use: an acting-only agent (a policy node's) never needs them, and
    # torch's first Adam in a process loads its compiler stack, seconds that would stall a node's executor.
    @functools.cached_property
    def actor_opt(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.actor_groups, lr=self.cfg.actor_lr)

    @functools.cached_property
    def critic_opt(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.critic_params, lr=self.cfg.critic_lr)

    def reset_optimizers(self) -> None:
        """Fresh Adam state (the released HIL-ConRFT learner starts its online stage with new optimisers)."""
        for name in ("actor_opt", "critic_opt"):
            self.__dict__.pop(name, None)

    @property
    def horizon(self) -> int:
        return self.cfg.horizon

    @property
    def acting_actor(self) -> ConsistencyHead:
        return self.actor if self.actor_average is None else self.actor_average

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"actor": self.actor_opt, "critic": self.critic_opt}

    def acting_modules(self) -> dict[str, nn.Module]:
        """What a policy node needs to act (the weights broadcast)."""
        return {"actor": self.acting_actor}

    @torch.no_grad()
    def act(self, state: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """Action chunks (B, H, A) in [-1, 1] (one-step consistency sampling is stochastic either way)."""
        return self.acting_actor.sample(state)

    # The actor's and the critic's state of a batch's `obs` or `next_obs`: the stored features in the frozen
    # mode (the same for both), the two encoders' outputs in full fine-tuning (with gradients unless disabled).
    def actor_state(self, batch: dict, which: str = "obs") -> torch.Tensor:
        if self.encoders is None:
            return batch["state" if which == "obs" else "next_state"]
        return self.encoders.actor_state(batch[which])

    def critic_state(self, batch: dict, which: str = "obs", target: bool = False) -> torch.Tensor:
        if self.encoders is None:
            return batch["state" if which == "obs" else "next_state"]
        return self.encoders.critic_state(batch[which], target=target)

    def critic_loss(self, batch: dict, offline: bool) -> tuple[torch.Tensor, dict]:
        """TD loss on the chunked target (+ Cal-QL when offline, or online with critic.cql_online). batch: state,
        next_state (or obs, next_obs), actions, rewards, reward_mask, discount, done, mc_return (tensors, see
        conrft_core.data.replay)."""
        a = batch["actions"]
        with torch.no_grad():
            s2 = self.actor_state(batch, "next_obs")
            next_value = self.critic.target_min(self.critic_state(batch, "next_obs", target=True),
                                                self.actor.sample(s2))
            y = chunked_td_target(batch["rewards"], batch["reward_mask"], batch["discount"], batch["done"],
                                  next_value, self.cfg.critic.gamma)
            if offline and self.cfg.critic.mc_target:
                y = torch.maximum(y, batch["mc_return"])
        c = self.critic_state(batch)  # full fine-tuning: the critic's encoder learns from this loss only
        q = self.critic(c, a)  # (E, B)
        td = (q - y).pow(2).mean()
        info = {"critic/td": td.item(), "critic/q_mean": q.mean().item(), "critic/target_mean": y.mean().item()}
        loss = td
        if (offline or self.cfg.critic.cql_online) and self.cfg.critic.cql_alpha > 0:
            n = self.cfg.critic.cql_num_samples
            with torch.no_grad():  # sampled chunks: uniform, pi(s), pi(s'), n of each
                s = self.actor_state(batch)  # a backbone pass in full fine-tuning: only when the term is on
                rep = lambda x: x.repeat_interleave(n, 0)  # noqa: E731 - (B, ...) -> (B*n, ...)
                samples = [torch.rand_like(rep(a)) * 2 - 1, self.actor.sample(rep(s)), self.actor.sample(rep(s2))]
            q_sampled = torch.cat([self.critic(rep(c), x).unflatten(1, (len(c), n)) for x in samples], dim=-1)
            bounded = None if self.cfg.critic.calql_bound == "all" else \
                torch.arange(3 * n, device=a.device) >= n  # official Cal-QL: the policy's samples only
            penalty = calql_penalty(q, q_sampled, batch["mc_return"], bounded, self.cfg.critic.cql_include_data)
            loss = loss + self.cfg.critic.cql_alpha * penalty
            info["critic/calql"] = penalty.item()
            if bounded is None:  # uniform samples with Q below the MC return get no push-down: the share pushed
                pushed = q_sampled[..., :n] > batch["mc_return"][None, :, None]
                info["critic/calql_uniform_pushed"] = pushed.float().mean().item()
        return loss, info

    def bc_mask(self, batch: dict) -> torch.Tensor | None:
        return batch["reward_mask"] if self.cfg.bc_mask_padding else None

    def stage_weights(self, offline: bool, online_updates: int = 0) -> StageWeights:
        """The stage's (beta, eta); online, after `online_updates` actor updates of that stage (online_ramp_updates)."""
        off, on, n = self.cfg.offline, self.cfg.online, self.cfg.online_ramp_updates
        if offline:
            return off
        if online_updates >= n:
            return on
        f = online_updates / n
        return StageWeights(off.beta + f * (on.beta - off.beta), off.eta + f * (on.eta - off.eta))

    def actor_loss(self, batch: dict, offline: bool, online_updates: int = 0) -> tuple[torch.Tensor, dict]:
        """beta * (consistency BC + action_anchor * ||pi(s) - a||^2, on the rows bc_data names) - eta * mean
        Q(s, pi(s)) (over the batch; / mean|Q| with q_normalize). The anchor counters the Q term on the executed
        action, so the imitation methods (update_bc) train on the consistency BC alone, as their authors do."""
        w = self.stage_weights(offline, online_updates)
        s = self.actor_state(batch)  # full fine-tuning: both terms reach the backbone through s
        with torch.no_grad():
            c = self.critic_state(batch)
        actions, s_bc, mask = batch["actions"], s, self.bc_mask(batch)
        rows = batch["from_demos"] if self.cfg.bc_data == "demos" else None
        if rows is not None:
            actions, s_bc, mask = actions[rows], s[rows], None if mask is None else mask[rows]
        bc = self.actor.bc_loss(actions, s_bc, mask)
        pi = self.actor.sample(s)
        if self.cfg.action_anchor > 0:
            bc = bc + self.cfg.action_anchor * self.actor.anchor_loss(pi if rows is None else pi[rows], actions, mask)
        pi_q = pi if self.cfg.q_gripper else torch.cat([pi[..., :-1], pi[..., -1:].detach()], dim=-1)
        q_pi = self.critic(c, pi_q).mean(0)
        q_term = q_pi.mean()
        if self.cfg.q_normalize:
            q_term = q_term / q_pi.abs().mean().detach().clamp_min(1e-6)
        loss = w.beta * bc - w.eta * q_term
        return loss, {"actor/bc": bc.item(), "actor/q_pi": q_pi.mean().item()}

    def update(self, sample_batch, offline: bool, online_updates: int = 0) -> dict:
        """One actor update preceded by `critic_updates_per_actor` critic updates (UTD), each on a fresh batch
        from `sample_batch()`; target networks follow by Polyak averaging after every critic step.
        `online_updates`: the online stage's updates before this one (online_ramp_updates)."""
        info = {}
        for _ in range(self.cfg.critic_updates_per_actor):
            batch = sample_batch()
            loss, info = self.critic_loss(batch, offline)
            gradient_step(self.critic_opt, loss, self.critic_params, self.cfg.grad_clip)
            self.critic.update_targets()
            if self.encoders is not None:
                self.encoders.update_critic_target(self.cfg.critic.tau)
        loss, actor_info = self.actor_loss(batch, offline, online_updates)
        self.actor_step(loss)
        return {**info, **actor_info}

    def actor_step(self, loss: torch.Tensor) -> None:
        gradient_step(self.actor_opt, loss, self.actor_params, self.cfg.grad_clip)
        if self.actor_average is not None:
            polyak(self.actor_average, self.actor, self.cfg.actor_ema)

    def update_bc(self, sample_batch) -> dict:
        """Imitation only (SFT, HG-DAgger): one actor step on the consistency BC loss; the critic is unused."""
        batch = sample_batch()
        loss = self.actor.bc_loss(batch["actions"], self.actor_state(batch), self.bc_mask(batch))
        self.actor_step(loss)
        return {"actor/bc": loss.item()}

    def diagnostics(self, batch: dict, with_critic: bool = True) -> dict:
        """What the online stage's stability is read from, on a batch of demonstration states (frozen mode):
        `mse` ||pi(s) - a||^2 per step (the released code's, the anchor of the executed action), the share of
        each action dimension at |pi(s)| > 0.99, and the mean dQ/da at a = pi(s) per dimension."""
        s, mask = self.actor_state(batch), batch["reward_mask"]
        with torch.no_grad():
            pi = self.actor.sample(s)
        steps = mask.sum().clamp_min(1.0)
        err = ((pi - batch["actions"]).pow(2).sum(-1) * mask).sum() / steps
        info = {"diag/mse": err.item()}
        saturated = ((pi.abs() > 0.99).float() * mask[..., None]).sum((0, 1)) / steps
        info.update({f"diag/saturated_{d}": v for d, v in enumerate(saturated.tolist())})
        if with_critic:
            a = pi.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.critic(self.critic_state(batch), a).mean(0).sum(), a)
            info.update({f"diag/dq_da_{d}": v for d, v in enumerate(grad.mean((0, 1)).tolist())})
        return info

    @torch.no_grad()
    def q_pi(self, state: torch.Tensor) -> torch.Tensor:
        """Mean over the ensemble of Q(s, pi(s)), (B,)."""
        return self.critic(state, self.actor.sample(state)).mean(0)
