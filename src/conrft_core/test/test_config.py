from dataclasses import dataclass, field
from typing import Literal

import pytest

from conrft_core.config import ConfigError, from_dict, load_yaml, to_dict


@dataclass
class Inner:
    gain: float = 1.0
    box: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.gain <= 0:
            raise ValueError("gain must be positive")


@dataclass
class Outer:
    name: str = "x"
    steps: int = 10
    mode: Literal["frozen", "finetune"] = "frozen"
    inner: Inner = field(default_factory=Inner)
    cameras: tuple[str, ...] = ("front",)


def test_nested_values_and_coercion():
    cfg = from_dict(Outer, {"steps": 5, "inner": {"gain": 2, "box": [1, 2, 3]}, "cameras": ["a", "b"]})
    assert cfg.steps == 5 and cfg.inner.gain == 2.0 and isinstance(cfg.inner.gain, float)
    assert cfg.inner.box == (1.0, 2.0, 3.0) and cfg.cameras == ("a", "b")
    assert to_dict(cfg)["inner"]["box"] == [1.0, 2.0, 3.0]


@pytest.mark.parametrize(
    "data, key",
    [
        ({"stepz": 1}, "'stepz'"),
        ({"inner": {"gainn": 1}}, "'inner.gainn'"),
        ({"steps": "ten"}, "'steps'"),
        ({"steps": True}, "'steps'"),
        ({"mode": "bogus"}, "'mode'"),
        ({"inner": {"box": [1, 2]}}, "'inner.box'"),
        ({"inner": {"gain": -1}}, "inner"),
    ],
)
def test_errors_name_the_key(data, key):
    with pytest.raises(ConfigError) as err:
        from_dict(Outer, data)
    assert key in str(err.value)


def test_load_yaml_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("3\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(scalar)
