"""Policy weights on the wire: pack -> unpack -> build_policy acts identically; every bad payload is refused
and a refused one leaves the running policy as it was."""
import hashlib

import numpy as np
import pytest
import torch

from conrft_core.checkpoint import to_bytes
from conrft_core.config import from_dict, to_dict
from conrft_core.learning.methods import TrainConfig
from conrft_core.learning.policy import Policy, build_agent
from conrft_core.robot.weights import WeightsError, adopt, build_policy, pack, unpack

FEATURE_DIM = 5


@pytest.fixture(scope="module", autouse=True)
def _torch_optim_imported():
    """The first optimiser a process builds imports torch._dynamo (~1 s); pay it once, not in a test."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def tiny_cfg(hidden=16):
    return from_dict(TrainConfig, {"device": "cpu", "agent": {"consistency": {"hidden_dim": hidden},
                                                              "critic": {"hidden_dim": hidden}}})


def make_policy(hidden=16, seed=0):
    """A policy with non-trivial weights and feature normalisation (so a fresh build cannot match by chance)."""
    torch.manual_seed(seed)
    cfg = tiny_cfg(hidden)
    policy = Policy(build_agent(cfg, FEATURE_DIM), FEATURE_DIM, torch.device("cpu"))
    with torch.no_grad():
        for p in policy.agent.actor.parameters():
            p.add_(0.3 * torch.randn_like(p))
    rng = np.random.default_rng(seed)
    policy.fit_normalization(rng.normal(2.0, 3.0, (50, FEATURE_DIM)).astype(np.float32))
    policy.agent.eval()
    return policy, cfg


def act(policy, feats, seed=123):
    torch.manual_seed(seed)  # consistency sampling draws noise: the same seed must give the same chunk
    return policy(feats, deterministic=True)


FEATS = np.array([1.0, -2.0, 0.5, 4.0, 3.0], np.float32)


def test_round_trip_gives_identical_actions():
    policy, cfg = make_policy()
    payload, sha, count = pack(policy, cfg)
    assert sha == hashlib.sha256(payload).hexdigest()
    assert count == sum(p.numel() for p in policy.agent.actor.parameters()) + 2 * FEATURE_DIM
    tensors, config = unpack(payload, sha, count)
    assert config["feature_dim"] == FEATURE_DIM and config["train"] == to_dict(cfg)
    torch.manual_seed(999)  # the receiver's own random init differs from the sender's
    rebuilt = build_policy(tensors, config, device="cpu")
    assert not rebuilt.agent.training
    torch.testing.assert_close(rebuilt.mean, policy.mean)
    torch.testing.assert_close(rebuilt.std, policy.std)
    for name, value in policy.actor_tensors().items():
        torch.testing.assert_close(rebuilt.actor_tensors()[name], value, rtol=0, atol=0, msg=name)
    expected = act(policy, FEATS)
    assert expected.shape == (1, 7)
    np.testing.assert_array_equal(act(rebuilt, FEATS), expected)
    # A different policy acts differently on the same features and noise (the comparison above can fail).
    other, _ = make_policy(seed=1)
    assert not np.allclose(act(other, FEATS), expected)


def test_a_flipped_payload_byte_is_rejected_by_the_message_sha():
    policy, cfg = make_policy()
    payload, sha, count = pack(policy, cfg)
    bad = bytearray(payload)
    bad[-5] ^= 0x01
    with pytest.raises(WeightsError, match="SHA-256 does not match"):
        unpack(bytes(bad), sha, count)
    with pytest.raises(WeightsError, match="SHA-256 does not match"):
        unpack(payload, "0" * 64, count)


def test_corruption_with_a_recomputed_sha_is_caught_by_the_tensor_digest():
    policy, cfg = make_policy()
    payload, _, count = pack(policy, cfg)
    bad = bytearray(payload)
    bad[-5] ^= 0x01  # a byte of tensor data; the sender's sha256 recomputed over the corrupt bytes
    bad = bytes(bad)
    with pytest.raises(WeightsError, match="corrupt"):
        unpack(bad, hashlib.sha256(bad).hexdigest(), count)


@pytest.mark.parametrize("keep", [0.5, 0.99, 0.001])
def test_a_truncated_payload_is_rejected(keep):
    policy, cfg = make_policy()
    payload, _, count = pack(policy, cfg)
    cut = payload[:max(1, int(len(payload) * keep))]
    with pytest.raises(WeightsError, match="truncated"):
        unpack(cut, hashlib.sha256(cut).hexdigest(), count)
    with pytest.raises(WeightsError, match="SHA-256 does not match"):
        unpack(cut, hashlib.sha256(payload).hexdigest(), count)


def test_a_parameter_count_mismatch_is_rejected():
    policy, cfg = make_policy()
    payload, sha, count = pack(policy, cfg)
    with pytest.raises(WeightsError, match=f"holds {count} parameters, the message says {count + 1}"):
        unpack(payload, sha, count + 1)
    tensors, _ = unpack(payload, sha)  # no count given: not checked
    assert sum(t.numel() for t in tensors.values()) == count


def test_a_nan_tensor_is_rejected_naming_it():
    policy, cfg = make_policy()
    with torch.no_grad():
        policy.agent.acting_actor.net[3].weight[2, 5] = float("nan")  # what acts and is sent
    payload, sha, count = pack(policy, cfg)  # a consistent payload, digest and all: the learner diverged
    with pytest.raises(WeightsError, match=r"tensor 'actor/net\.3\.weight' holds NaN or inf"):
        unpack(payload, sha, count)
    policy, cfg = make_policy()
    policy.std = policy.std.clone()
    policy.std[0] = float("inf")
    payload, sha, count = pack(policy, cfg)
    with pytest.raises(WeightsError, match="tensor 'features/std' holds NaN or inf"):
        unpack(payload, sha, count)


def test_adopt_replaces_the_running_policy_when_shapes_match():
    running, _ = make_policy(seed=0)
    source, cfg = make_policy(seed=1)
    before = act(running, FEATS)
    tensors, _ = unpack(*pack(source, cfg))
    adopt(running, tensors)
    after = act(running, FEATS)
    assert not np.allclose(after, before)
    np.testing.assert_array_equal(after, act(source, FEATS))


def _snapshot(policy):
    return {k: v.clone() for k, v in policy.actor_tensors().items()}


def test_adopt_with_another_hidden_size_is_refused_and_changes_nothing():
    running, _ = make_policy(hidden=16, seed=0)
    wider, cfg32 = make_policy(hidden=32, seed=1)  # its normalisation differs too
    tensors, _ = unpack(*pack(wider, cfg32))
    before, state = act(running, FEATS), _snapshot(running)
    with pytest.raises(WeightsError, match=r"tensor 'actor/net\.\d+\.(weight|bias)' has shape \(.*32.*\), the model "
                                           r"expects \(.*16.*\)"):
        adopt(running, tensors)
    np.testing.assert_array_equal(act(running, FEATS), before)
    for name, value in _snapshot(running).items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)


def test_adopt_is_all_or_nothing_when_only_the_last_tensor_is_wrong():
    running, _ = make_policy(seed=0)
    source, cfg = make_policy(seed=1)
    tensors, _ = unpack(*pack(source, cfg))
    last = sorted(k for k in tensors if k.startswith("actor/"))[-1]
    tensors[last] = torch.zeros(tensors[last].numel() + 1)
    before, state = act(running, FEATS), _snapshot(running)
    with pytest.raises(WeightsError, match=f"tensor '{last}' has shape"):
        adopt(running, tensors)
    np.testing.assert_array_equal(act(running, FEATS), before)
    for name, value in _snapshot(running).items():
        torch.testing.assert_close(value, state[name], rtol=0, atol=0, msg=name)


def test_adopt_refuses_a_normalisation_of_another_feature_size():
    running, _ = make_policy(seed=0)
    source, cfg = make_policy(seed=1)
    tensors, _ = unpack(*pack(source, cfg))
    tensors["features/mean"] = torch.zeros(FEATURE_DIM + 1)
    before = act(running, FEATS)
    with pytest.raises(WeightsError, match="features/mean"):
        adopt(running, tensors)
    np.testing.assert_array_equal(act(running, FEATS), before)


def test_build_policy_refuses_an_unusable_config():
    policy, cfg = make_policy()
    tensors, config = unpack(*pack(policy, cfg))
    with pytest.raises(WeightsError, match="unusable config"):
        build_policy(tensors, {**config, "train": {**config["train"], "method": "dagger"}}, device="cpu")
    with pytest.raises(WeightsError, match="unusable config"):
        build_policy(tensors, {"train": config["train"]}, device="cpu")  # no feature_dim


def test_unpack_refuses_a_safetensors_file_that_is_not_a_checkpoint():
    from safetensors.torch import save

    plain = save({"actor/x": torch.zeros(2)})
    with pytest.raises(WeightsError, match="not a ConRFT checkpoint"):
        unpack(plain, hashlib.sha256(plain).hexdigest())
    ok = to_bytes({"actor/x": torch.zeros(2)}, {})
    assert unpack(ok, hashlib.sha256(ok).hexdigest(), 2)[0]["actor/x"].shape == (2,)
