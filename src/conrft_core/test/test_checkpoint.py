import pytest
import torch
from torch import nn

from conrft_core.checkpoint import CheckpointError, from_bytes, load_checkpoint, load_into, save_checkpoint, to_bytes


def model(width=4):
    return nn.Sequential(nn.Linear(3, width), nn.LayerNorm(width), nn.Linear(width, 2))


def test_round_trip_with_config(tmp_path):
    torch.manual_seed(0)
    src = model()
    tensors = {f"actor/{k}": v for k, v in src.state_dict().items()} | {"step": torch.tensor(7)}
    save_checkpoint(tmp_path / "c.safetensors", tensors, {"hidden": 4, "task": "pick_cube"})
    loaded, config = load_checkpoint(tmp_path / "c.safetensors")
    assert config == {"hidden": 4, "task": "pick_cube"} and loaded["step"].item() == 7
    dst = model()
    load_into(dst, loaded, prefix="actor/")
    x = torch.randn(5, 3)
    torch.testing.assert_close(dst(x), src(x))
    assert not list(tmp_path.glob(".*partial"))


def test_shape_mismatch_names_the_tensor_and_leaves_model_untouched():
    tensors, _ = from_bytes(to_bytes(model(width=8).state_dict(), {}))
    dst = model(width=4)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"tensor '0.bias' has shape \(8,\).*expects \(4,\)"):
        load_into(dst, tensors)
    for k, v in dst.state_dict().items():
        torch.testing.assert_close(v, before[k])


def test_missing_and_extra_tensors():
    tensors = dict(model().state_dict())
    del tensors["2.bias"]
    with pytest.raises(CheckpointError, match="lacks tensor '2.bias'"):
        load_into(model(), tensors)
    with pytest.raises(CheckpointError, match="unexpected tensor 'head.x'"):
        load_into(model(), dict(model().state_dict()) | {"head.x": torch.zeros(1)})


def test_truncated_and_corrupt_files_never_load(tmp_path):
    data = to_bytes(model().state_dict(), {"a": 1})
    (tmp_path / "t.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "t.safetensors")
    flipped = bytearray(data)
    flipped[-3] ^= 0xFF  # a byte of tensor data
    with pytest.raises(CheckpointError, match="corrupt"):
        from_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.safetensors")
