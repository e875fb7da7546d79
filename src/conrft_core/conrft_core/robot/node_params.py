"""Parameter declaration shared by every ConRFT ROS node (duck-typed over rclpy.Node; imports no rclpy), and a
node's parameters as its parameter files give them.

ROS 2 silently ignores a parameter override whose name no node declares, so a typo in a parameter file
(`real_time_factr: 0`) would leave a default in force, possibly one that moves the robot. `declare_all`
declares every parameter with its default (which fixes its type) and refuses overrides it does not know.
"""
from __future__ import annotations

from conrft_core.config import ConfigError, load_yaml


def declare_all(node, defaults: dict) -> dict:
    """Declare `defaults` on `node`; return the effective values. Unknown overrides raise ConfigError."""
    known = set(defaults) | {"use_sim_time"}
    unknown = sorted(set(getattr(node, "_parameter_overrides", {})) - known)
    if unknown:
        raise ConfigError(
            f"unknown parameter '{unknown[0]}' for node '{node.get_name()}'; valid parameters: "
            f"{', '.join(sorted(defaults))}"
        )
    values = {}
    for name, default in defaults.items():
        try:
            values[name] = node.declare_parameter(name, default).value
        except Exception as exc:  # rclpy's InvalidParameterTypeException and friends
            raise ConfigError(
                f"parameter '{name}' of node '{node.get_name()}' must be of type {type(default).__name__} "
                f"(default {default!r}): {exc}"
            ) from None
    return values


def file_parameters(files, node: str) -> dict:
    """The parameters ROS parameter files give node `node` (its `node: ros__parameters:` blocks; a later file's
    values win, as ROS applies them), for a launcher that passes some of them on to another node."""
    values = {}
    for path in files:
        data = load_yaml(path)
        if node not in data:
            continue
        block = data[node]
        params = block.get("ros__parameters") if isinstance(block, dict) else None
        if not isinstance(params, dict):
            raise ConfigError(f"{path}: block '{node}' must hold one mapping, 'ros__parameters'")
        values.update(params)
    return values
