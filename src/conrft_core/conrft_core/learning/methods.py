"""The methods this stack trains (which stages run, with which losses) and the configuration of one run.

    method       offline stage (demo buffer)               online stage (policy + human takeovers)
    sft          consistency BC                            -
    cal_conrft   Cal-ConRFT: Cal-QL critic, beta BC - eta Q -
    co_rft       the same on action chunks (chunked TD)    -
    hil_conrft   Cal-ConRFT (H = 1, or chunks)             HIL-ConRFT on 50/50 demo+intervention / online batches
    hg_dagger    consistency BC                            BC on the demo buffer (demos + interventions)
    hil_serl     -                                         SAC on 50/50 batches (RLPD), no BC term

Seeds come in two splits that never overlap: settings are chosen by looking at validation runs, numbers are
reported from test runs that no choice looked at. A split is a range of run seeds (`train.seed`: model
initialisation, the human's and the training episodes' randomness) and a first evaluation-episode seed; training
episodes draw their seeds below every evaluation range.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from conrft_core.learning.agent import AgentConfig
from conrft_core.learning.finetune import EncoderConfig
from conrft_core.learning.sac import SACConfig


@dataclass(frozen=True)
class Method:
    offline: bool  # runs the offline stage
    online: bool  # runs the online stage with a human
    imitation: bool  # BC updates only, no critic
    mixed_batches: bool  # online batches mix demo and online buffers (RLPD); else demo buffer only
    sac: bool = False  # the HIL-SERL agent instead of the consistency policy


METHODS = {
    "sft": Method(offline=True, online=False, imitation=True, mixed_batches=False),
    "cal_conrft": Method(offline=True, online=False, imitation=False, mixed_batches=False),
    "co_rft": Method(offline=True, online=False, imitation=False, mixed_batches=False),
    "hil_conrft": Method(offline=True, online=True, imitation=False, mixed_batches=True),
    "hg_dagger": Method(offline=True, online=True, imitation=True, mixed_batches=False),
    "hil_serl": Method(offline=False, online=True, imitation=False, mixed_batches=True, sac=True),
}


@dataclass
class TrainConfig:
    method: str = "hil_conrft"  # one of METHODS
    seed: int = 0
    offline_updates: int = 2000
    online_env_steps: int = 12_000
    updates_per_env_step: float = 1.0  # actor updates per executed step (critic updates: x critic_updates_per_actor)
    batch_size: int = 256
    demo_fraction: float = 0.5  # RLPD share of demo + intervention samples in online batches
    replay_capacity: int = 100_000
    eval_episodes: int = 20
    eval_every_steps: int = 1000
    unseen_eval_episodes: int = 0  # final evaluation on the unseen object range
    split: Literal["validation", "test"] = "validation"  # which seed ranges this run belongs to
    validation_seeds: tuple[int, int] = (0, 99)  # train.seed of validation runs (inclusive)
    test_seeds: tuple[int, int] = (200, 299)  # train.seed of test runs
    eval_seed: int = 1_000_000  # validation evaluation episodes: seeds eval_seed + i
    test_eval_seed: int = 3_000_000  # test evaluation episodes: seeds test_eval_seed + i
    checkpoint_every_updates: int = 1000  # offline stage
    checkpoint_every_steps: int = 1000  # online stage (at the end of the episode that crosses it)
    device: str = "auto"  # auto: cuda when available, else cpu
    success_key: str = "success"  # the entry of the env's step `info` that says the task was achieved
    agent: AgentConfig = field(default_factory=AgentConfig)
    sac: SACConfig = field(default_factory=SACConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)  # features: vla_finetune only

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"train.method '{self.method}' is unknown; choose one of {', '.join(METHODS)}")
        if self.method == "co_rft" and self.agent.horizon < 2:
            raise ValueError("train.method co_rft trains action chunks: set train.agent.consistency.horizon >= 2")
        for name in ("offline_updates", "online_env_steps", "eval_episodes", "unseen_eval_episodes"):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("batch_size", "eval_every_steps", "checkpoint_every_updates", "checkpoint_every_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"train.{name} must be >= 1, got {getattr(self, name)}")
        if self.replay_capacity < 2:
            raise ValueError(f"train.replay_capacity must be >= 2, got {self.replay_capacity}")
        if not 0 <= self.demo_fraction <= 1:
            raise ValueError(f"train.demo_fraction must be in [0, 1], got {self.demo_fraction}")
        if self.updates_per_env_step < 0:
            raise ValueError(f"train.updates_per_env_step must be >= 0, got {self.updates_per_env_step}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"train.device must be auto, cpu or cuda[:N], got {self.device!r}")
        self._check_split()
        if not self.success_key:
            raise ValueError("train.success_key must name the env's info entry for success (e.g. 'success')")

    def _check_split(self) -> None:
        (vlo, vhi), (tlo, thi) = self.validation_seeds, self.test_seeds
        if vlo > vhi or tlo > thi:
            raise ValueError("train.validation_seeds and train.test_seeds are [first, last] ranges (first <= last)")
        if vlo <= thi and tlo <= vhi:
            raise ValueError(f"train.validation_seeds {list(self.validation_seeds)} and train.test_seeds "
                             f"{list(self.test_seeds)} overlap: a seed used to choose settings cannot report them")
        n = max(self.eval_episodes, self.unseen_eval_episodes, 1)
        if self.eval_seed < self.test_eval_seed + n and self.test_eval_seed < self.eval_seed + n:
            raise ValueError(f"the evaluation episodes of the two splits overlap: train.eval_seed {self.eval_seed} "
                             f"and train.test_eval_seed {self.test_eval_seed} must be at least {n} apart")
        lo, hi = self.validation_seeds if self.split == "validation" else self.test_seeds
        if not lo <= self.seed <= hi:
            other = "test" if self.split == "validation" else "validation"
            raise ValueError(f"train.seed {self.seed} is not a {self.split} seed (train.{self.split}_seeds: "
                             f"[{lo}, {hi}]); pick one in that range, or set train.split: {other} if it is one")

    @property
    def evaluation_seed(self) -> int:
        """First evaluation-episode seed of this run's split."""
        return self.eval_seed if self.split == "validation" else self.test_eval_seed

    @property
    def training_seed_limit(self) -> int:
        """Training episodes (demonstrations, online rollouts) draw their seeds below this: no evaluation seed."""
        return min(self.eval_seed, self.test_eval_seed)

    @property
    def horizon(self) -> int:
        return 1 if METHODS[self.method].sac else self.agent.horizon

    @property
    def action_dim(self) -> int:
        return (self.sac if METHODS[self.method].sac else self.agent.consistency).action_dim

    @property
    def gamma(self) -> float:
        return (self.sac if METHODS[self.method].sac else self.agent).critic.gamma
