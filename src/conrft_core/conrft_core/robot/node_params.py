"""Parameter declaration shared by every ConRFT ROS node (duck-typed over rclpy.Node; imports no rclpy).

ROS 2 silently ignores a parameter override whose name no node declares, so a typo in a parameter file
(`real_time_factr: 0`) would leave a default in force, possibly one that moves the robot. `declare_all`
declares every parameter with its default (which fixes its type) and refuses overrides it does not know.
"""
from __future__ import annotations

from conrft_core.config import ConfigError


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
