"""Replay buffer: hand-checked chunk samples, history clamping, eviction, mixing, save/load and embeddings."""
import numpy as np
import pytest

from conrft_core.data.episode import Episode
from conrft_core.data.replay import ReplayBuffer, sample_mixed

CAMS = ("front", "wrist")
IMG = (4, 4, 3)
GAMMA = 0.5  # exact in binary, so expected values below are exact
PROPRIO_DIM, ACTION_DIM = 19, 7  # any sizes: the buffer stores what it is configured for


def make_ep(eid, rewards, terminated):
    """Every observation k of episode eid carries the marker 100*eid + k (proprio[0], embedding, image = 50*eid + k);
    action k carries 100*eid + k in its first entry."""
    T = len(rewards)
    k = np.arange(T + 1)
    proprio = np.zeros((T + 1, PROPRIO_DIM), np.float32)
    proprio[:, 0] = 100 * eid + k
    actions = np.zeros((T, ACTION_DIM), np.float32)
    actions[:, 0] = 100 * eid + k[:T]
    images = {c: np.broadcast_to((50 * eid + k + i).astype(np.uint8)[:, None, None, None], (T + 1, *IMG)).copy()
              for i, c in enumerate(CAMS)}
    return Episode(episode_id=eid, instruction="push", images=images, proprio=proprio, actions=actions,
                   rewards=np.asarray(rewards, np.float32), intervened=k[:T] % 2 == 1, terminated=terminated,
                   truncated=not terminated)


def embeddings_for(ep):
    return np.repeat(ep.proprio[:, :1], 4, axis=1) + np.arange(4, dtype=np.float32)


# Episode A: 3 steps, terminated. Episode B: 5 steps, truncated (time limit).
EP_A = dict(eid=0, rewards=[1, 2, 4], terminated=True)
EP_B = dict(eid=1, rewards=[0.5, 1, 2, 4, 8], terminated=False)

# Hand-computed for H = 3, gamma = 0.5, history = 2, keyed by (episode, t):
# (obs steps, action steps, rewards, mask, n, next_obs steps, done, mc_return)
EXPECTED_H3 = {
    (0, 0): ([0, 0], [0, 1, 2], [1, 2, 4], [1, 1, 1], 3, [2, 3], 1, 3.0),  # 1 + 2/2 + 4/4
    (0, 1): ([0, 1], [1, 2, 2], [2, 4, 0], [1, 1, 0], 2, [2, 3], 1, 4.0),  # pad repeats a_2
    (0, 2): ([1, 2], [2, 2, 2], [4, 0, 0], [1, 0, 0], 1, [2, 3], 1, 4.0),
    (1, 0): ([0, 0], [0, 1, 2], [0.5, 1, 2], [1, 1, 1], 3, [2, 3], 0, 2.5),
    (1, 1): ([0, 1], [1, 2, 3], [1, 2, 4], [1, 1, 1], 3, [3, 4], 0, 4.0),
    (1, 2): ([1, 2], [2, 3, 4], [2, 4, 8], [1, 1, 1], 3, [4, 5], 0, 6.0),  # truncated end: bootstrap
    (1, 3): ([2, 3], [3, 4, 4], [4, 8, 0], [1, 1, 0], 2, [4, 5], 0, 8.0),
    (1, 4): ([3, 4], [4, 4, 4], [8, 0, 0], [1, 0, 0], 1, [4, 5], 0, 8.0),
}


def make_buffer(capacity=20, **kw):
    return ReplayBuffer(capacity, CAMS, IMG, proprio_dim=PROPRIO_DIM, action_dim=ACTION_DIM, gamma=GAMMA, **kw)


def filled_buffer(**kw):
    buf = make_buffer(**kw)
    buf.add_episode(make_ep(**EP_A))
    buf.add_episode(make_ep(**EP_B))
    return buf


def decode(batch, i):
    """(episode id, t) of sample i, read from the marker of its current observation."""
    marker = int(batch["obs"]["proprio"][i, -1, 0])
    return marker // 100, marker % 100


def check_obs(obs, i, eid, steps):
    assert obs["proprio"][i, :, 0].tolist() == [100 * eid + s for s in steps]
    for j, c in enumerate(CAMS):
        assert obs["images"][c][i].shape == (len(steps), *IMG)
        assert obs["images"][c][i, :, 0, 0, 0].tolist() == [50 * eid + s + j for s in steps]


def test_chunks_match_hand_computed_values():
    buf = filled_buffer()
    assert len(buf) == 8 and buf.num_episodes == 2
    b = buf.sample(400, horizon=3, gamma=GAMMA, rng=np.random.default_rng(0))
    assert b["actions"].shape == (400, 3, ACTION_DIM) and b["rewards"].shape == (400, 3)
    seen = set()
    for i in range(400):
        eid, t = decode(b, i)
        obs_steps, act_steps, rewards, mask, n, next_steps, done, mc = EXPECTED_H3[(eid, t)]
        seen.add((eid, t))
        check_obs(b["obs"], i, eid, obs_steps)
        assert b["actions"][i, :, 0].tolist() == [100 * eid + s for s in act_steps]
        assert b["rewards"][i].tolist() == rewards
        assert b["reward_mask"][i].tolist() == mask
        assert b["n_steps"][i] == n and b["discount"][i] == GAMMA ** n
        check_obs(b["next_obs"], i, eid, next_steps)
        assert b["done"][i] == done
        assert b["mc_return"][i] == mc
        assert b["intervened"][i] == (t % 2 == 1)
    assert seen == set(EXPECTED_H3)  # every valid start drawn, never a final observation


def test_sampling_is_uniform_over_valid_steps():
    b = filled_buffer().sample(8000, horizon=1, gamma=GAMMA, rng=np.random.default_rng(1))
    counts = np.unique(b["obs"]["proprio"][:, -1, 0], return_counts=True)[1]
    assert len(counts) == 8 and counts.min() > 850 and counts.max() < 1150  # 1000 each expected


def test_horizon_one_is_single_step_td():
    b = filled_buffer().sample(300, horizon=1, gamma=GAMMA, rng=np.random.default_rng(2))
    assert np.all(b["n_steps"] == 1) and np.all(b["discount"] == GAMMA) and np.all(b["reward_mask"] == 1)
    for i in range(300):
        eid, t = decode(b, i)
        check_obs(b["next_obs"], i, eid, [t, t + 1])
        assert b["done"][i] == (eid == 0 and t == 2)  # only the last step of the terminated episode


def test_done_only_when_chunk_reaches_terminal():
    b = filled_buffer().sample(300, horizon=2, gamma=GAMMA, rng=np.random.default_rng(3))
    for i in range(300):
        eid, t = decode(b, i)
        assert b["done"][i] == (eid == 0 and t >= 1)  # A from t=0 stops at s_2, mid-episode
        assert b["n_steps"][i] == min(2, (3 if eid == 0 else 5) - t)


def test_history_clamps_at_episode_start():
    b = filled_buffer(history=3).sample(300, horizon=2, gamma=GAMMA, rng=np.random.default_rng(4))
    for i in range(300):
        eid, t = decode(b, i)
        check_obs(b["obs"], i, eid, [max(t - 2, 0), max(t - 1, 0), t])


def test_frames_stored_once_per_slot():
    per_slot = 2 * 4 * 4 * 3 + 4 * PROPRIO_DIM + 4 * ACTION_DIM + 4 + 1 + 4 + 4 + 4 + 1  # + reward..terminated
    assert make_buffer(10).bytes_per_transition == per_slot
    assert make_buffer(20).nbytes == 2 * make_buffer(10).nbytes
    assert make_buffer(10, history=8).nbytes == make_buffer(10, history=1).nbytes
    assert make_buffer(10, embedding_dim=4).nbytes - make_buffer(10).nbytes == 10 * 4 * 4


def test_eviction_of_oldest_whole_episode_and_wraparound():
    buf = make_buffer(12)
    buf.add_episode(make_ep(**EP_A))  # slots 0..3
    buf.add_episode(make_ep(**EP_B))  # slots 4..9
    buf.add_episode(make_ep(2, [1, 1, 1], terminated=True))  # needs 4: evicts A, wraps onto slots 10, 11, 0, 1
    assert buf.num_episodes == 2 and len(buf) == 8
    b = buf.sample(300, horizon=3, gamma=GAMMA, rng=np.random.default_rng(5))
    eids = {decode(b, i)[0] for i in range(300)}
    assert eids == {1, 2}
    for i in range(300):
        eid, t = decode(b, i)
        if eid == 2:  # the wrapped episode reads consistently across the array end
            assert b["actions"][i, :, 0].tolist() == [200 + min(t + k, 2) for k in range(3)]
            check_obs(b["next_obs"], i, 2, [2, 3])
            assert b["mc_return"][i] == [1.75, 1.5, 1.0][t]
    buf.add_episode(make_ep(3, [1] * 7, terminated=False))  # needs 8 of 12: evicts B only (2 + 3 slots left)
    assert buf.num_episodes == 2 and len(buf) == 3 + 7
    b = buf.sample(300, horizon=3, gamma=GAMMA, rng=np.random.default_rng(6))
    assert {decode(b, i)[0] for i in range(300)} == {2, 3}


def test_episode_longer_than_capacity():
    make_buffer(6).add_episode(make_ep(1, [0] * 5, True))  # exactly fits: 6 slots
    with pytest.raises(ValueError, match="needs 7 slots"):
        make_buffer(6).add_episode(make_ep(1, [0] * 6, True))


def test_bad_inputs():
    buf = make_buffer()
    with pytest.raises(ValueError, match="empty"):
        buf.sample(4, 3, GAMMA, np.random.default_rng(0))
    ep = make_ep(**EP_A)
    with pytest.raises(ValueError, match="embedding"):
        buf.add_episode(ep, embeddings_for(ep))
    del ep.images["wrist"]
    with pytest.raises(ValueError, match="wrist"):
        buf.add_episode(ep)
    with pytest.raises(ValueError, match="gamma"):
        filled_buffer().sample(4, 3, 0.99, np.random.default_rng(0))
    with pytest.raises(ValueError, match="image"):
        ReplayBuffer(10, CAMS, (8, 8, 3), proprio_dim=PROPRIO_DIM, action_dim=ACTION_DIM).add_episode(make_ep(**EP_A))


def test_sample_mixed_fractions_and_sources():
    demo, online = make_buffer(), make_buffer()
    demo.add_episode(make_ep(**EP_A))
    online.add_episode(make_ep(**EP_B))
    rng = np.random.default_rng(6)
    b = sample_mixed([demo, online], [0.5, 0.5], 10, 3, GAMMA, rng)
    assert b["source"].tolist() == [0] * 5 + [1] * 5
    assert [decode(b, i)[0] for i in range(10)] == b["source"].tolist()
    assert b["obs"]["images"]["front"].shape == (10, 2, *IMG) and b["actions"].shape == (10, 3, ACTION_DIM)
    assert np.bincount(sample_mixed([demo, online], [0.25, 0.75], 8, 3, GAMMA, rng)["source"]).tolist() == [2, 6]
    assert len(sample_mixed([demo, online], [0.5, 0.5], 7, 3, GAMMA, rng)["source"]) == 7
    b = sample_mixed([demo, make_buffer()], [1.0, 0.0], 4, 3, GAMMA, rng)  # an empty buffer with no share
    assert b["source"].tolist() == [0] * 4
    with pytest.raises(ValueError, match="fraction"):
        sample_mixed([demo, online], [0.5, 0.6], 8, 3, GAMMA, rng)
    with pytest.raises(ValueError, match="share"):
        sample_mixed([demo, make_buffer(history=3)], [0.5, 0.5], 8, 3, GAMMA, rng)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], dict):
            assert_same(a[k], b[k])
        else:
            assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k


def test_save_load_round_trip(tmp_path):
    buf = make_buffer(12, embedding_dim=4)
    for ep in (make_ep(**EP_A), make_ep(**EP_B), make_ep(2, [1, 1, 1], True)):  # the last one wraps
        buf.add_episode(ep, embeddings_for(ep))
    buf.save(tmp_path / "r.safetensors")
    loaded = ReplayBuffer.load(tmp_path / "r.safetensors")
    assert (len(loaded), loaded.num_episodes, loaded.nbytes) == (len(buf), buf.num_episodes, buf.nbytes)
    def same_samples(horizon, seed):
        assert_same(*(b.sample(64, horizon, GAMMA, np.random.default_rng(seed)) for b in (buf, loaded)))

    same_samples(3, seed=7)
    ep = make_ep(3, [1, 2], False)  # the ring pointers came back: the next add evicts and places alike
    for b in (buf, loaded):
        b.add_episode(ep, embeddings_for(ep))
    same_samples(2, seed=8)
    make_buffer().save(tmp_path / "empty.safetensors")
    assert len(ReplayBuffer.load(tmp_path / "empty.safetensors")) == 0


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_corrupt_file_raises_naming_it(tmp_path, damage):
    path = tmp_path / "r.safetensors"
    filled_buffer().save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[:-10]
    elif damage == "flip":
        data[-50] ^= 0xFF  # inside the tensor data; the header still parses
    else:
        data = b"not a safetensors file at all"
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="r.safetensors"):
        ReplayBuffer.load(path)


def test_embeddings_stored_and_returned():
    buf = make_buffer(embedding_dim=4)
    for ep in (make_ep(**EP_A), make_ep(**EP_B)):
        buf.add_episode(ep, embeddings_for(ep))
    with pytest.raises(ValueError, match="embedding"):
        buf.add_episode(make_ep(**EP_A))
    b = buf.sample(100, 3, GAMMA, np.random.default_rng(9))
    assert b["obs"]["embedding"].shape == (100, 2, 4) and b["next_obs"]["embedding"].dtype == np.float32
    for i in range(100):
        eid, t = decode(b, i)
        steps = EXPECTED_H3[(eid, t)]
        for key, s in (("obs", steps[0]), ("next_obs", steps[5])):
            expected = (100 * eid + np.array(s))[:, None] + np.arange(4)
            assert np.array_equal(b[key]["embedding"][i], expected)
