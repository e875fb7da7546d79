"""Controller presets (`config/controllers/NAME.yaml`): what the Cartesian impedance controller a session drives
expects, chosen with one argument (`controller:=NAME`).

A preset is a ROS parameter file, given after the nodes' own files so its values win. Its node blocks set the
target topic and frame where the nodes that publish or serve targets read them (`policy`, and `home_reset` or
`sim` where present); its `controller` block is what only the controller knows, named for no node so that no
node takes it as parameters: `stream_rate`, the rate the controller wants targets at (home_reset and the
policy node's target streamer stream at it, the streamer taking the policy block's values; the sim preset's
policy sends one target per step, as the in-process env applies them), and `stiffness`, where the controller's
stiffness is set. Every key is checked here, so a typo is named before a node starts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from conrft_core.config import ConfigError, from_dict, load_yaml

PRESETS_DIR = "controllers"  # the presets' folder, under config/
NODE_BLOCKS = ("policy", "home_reset", "sim")  # nodes a preset may set parameters of
SHARED = ("target_topic", "frame_id")  # the same in every node block that sets them


@dataclass(frozen=True)
class Stiffness:
    """Where the controller's stiffness is set (by the user or a tool; no ConRFT node changes it)."""
    interface: Literal["service", "topic", "parameters"]
    name: str  # the service, the topic, or the controller node whose parameters hold the stiffness
    type: str  # the service's or message's type; for `parameters` the parameter prefix (FZI: stiffness)

    def __post_init__(self) -> None:
        if not self.name.startswith("/"):
            raise ValueError(f"stiffness.name must be an absolute ROS name, got {self.name!r}")
        if not self.type:
            raise ValueError("stiffness.type must not be empty")


@dataclass(frozen=True)
class ControllerBlock:
    stream_rate: float  # Hz the controller wants targets streamed at
    stiffness: Stiffness

    def __post_init__(self) -> None:
        if not (math.isfinite(self.stream_rate) and self.stream_rate > 0):
            raise ValueError(f"stream_rate must be a positive number of Hz, got {self.stream_rate!r}")


@dataclass(frozen=True)
class ControllerPreset:
    name: str
    target_topic: str  # geometry_msgs/PoseStamped targets
    frame_id: str  # the frame of every target: the controller's base frame
    stream_rate: float
    stiffness: Stiffness
    nodes: dict  # node name -> the parameters the preset sets on it


def preset_names(presets_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in Path(presets_dir).glob("*.yaml"))


def load_preset(path: str | Path) -> ControllerPreset:
    """The preset in `path` (config/controllers/NAME.yaml); a missing file is an unknown name: the error lists
    the presets next to it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"unknown controller preset '{path.stem}'; presets in {path.parent}: "
                          f"{', '.join(preset_names(path.parent)) or 'none'}")
    data = load_yaml(path)
    unknown = sorted(set(data) - {"controller", *NODE_BLOCKS})
    if unknown:
        raise ConfigError(f"{path}: unknown block '{unknown[0]}'; a preset has: controller, {', '.join(NODE_BLOCKS)}")
    blocks = {}
    for name in ("controller", *NODE_BLOCKS):
        if name not in data:
            continue
        block = data[name]
        if not isinstance(block, dict) or set(block) != {"ros__parameters"} or not isinstance(
                block["ros__parameters"], dict):
            raise ConfigError(f"{path}: block '{name}' must hold exactly one mapping, 'ros__parameters'")
        blocks[name] = block["ros__parameters"]
    for name in ("controller", "policy"):
        if name not in blocks:
            raise ConfigError(f"{path}: the '{name}' block is missing")
    controller = from_dict(ControllerBlock, blocks.pop("controller"), "controller.ros__parameters")
    policy = blocks["policy"]
    for key in SHARED:
        if not isinstance(policy.get(key), str) or not policy[key]:
            raise ConfigError(f"{path}: policy.ros__parameters.{key} must be set (a non-empty string)")
    if not policy["target_topic"].startswith("/"):
        raise ConfigError(f"{path}: policy.ros__parameters.target_topic must be an absolute topic name")
    for name, params in blocks.items():
        for key in SHARED:
            if key in params and params[key] != policy[key]:
                raise ConfigError(f"{path}: {name}.ros__parameters.{key} is {params[key]!r}, the policy's is "
                                  f"{policy[key]!r}: both drive one controller")
    rate = blocks.get("home_reset", {}).get("rate", controller.stream_rate)
    if rate != controller.stream_rate:  # home_reset streams its targets: at the controller's rate
        raise ConfigError(f"{path}: home_reset.ros__parameters.rate is {rate}, controller.ros__parameters."
                          f"stream_rate is {controller.stream_rate}: they must agree")
    streamed = policy.get("stream_rate", controller.stream_rate)
    if streamed not in (0, 0.0, controller.stream_rate):  # 0: one target per step (the sim)
        raise ConfigError(f"{path}: policy.ros__parameters.stream_rate is {streamed}, controller.ros__parameters."
                          f"stream_rate is {controller.stream_rate}: stream at the controller's rate (or 0: one "
                          f"target per step)")
    return ControllerPreset(path.stem, policy["target_topic"], policy["frame_id"], controller.stream_rate,
                            controller.stiffness, blocks)
