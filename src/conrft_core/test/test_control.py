"""Action checks before the controller, and open-loop chunk execution."""
import numpy as np
import pytest

from conrft_core.robot.control import ActionError, ChunkExecutor, check_action, check_chunk


def test_check_action_passes_a_valid_action_unchanged():
    a = [0.1, -0.2, 0.3, -1.0, 1.0, 0.0, 0.5]
    out = check_action(a)
    assert out.shape == (7,)
    np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("action", [np.zeros(6), np.zeros(8), np.zeros((1, 7)), np.zeros(())])
def test_check_action_wrong_shape(action):
    with pytest.raises(ActionError, match=r"cmd has shape .*expected \(7,\)"):
        check_action(action, "cmd")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_check_action_non_finite(bad):
    a = np.zeros(7)
    a[3] = bad
    with pytest.raises(ActionError, match="cmd contains NaN or inf"):
        check_action(a, "cmd")


@pytest.mark.parametrize("value", [1.01, -1.5, 7.0])
def test_check_action_out_of_range_beyond_tolerance(value):
    a = np.zeros(7)
    a[6] = value
    with pytest.raises(ActionError, match=r"cmd is out of range \[-1, 1\]"):
        check_action(a, "cmd")


def test_check_action_clips_a_tiny_overshoot():
    a = np.array([1.0005, -1.0009, 0.2, 0, 0, 0, 1.0])
    out = check_action(a)
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.2, 0, 0, 0, 1.0])


def test_check_chunk_shape():
    with pytest.raises(ActionError, match=r"plan has shape \(3, 7\), expected \(4, 7\)"):
        check_chunk(np.zeros((3, 7)), horizon=4, source="plan")
    with pytest.raises(ActionError, match=r"expected \(2, 7\)"):
        check_chunk(np.zeros((2, 6)), horizon=2)
    with pytest.raises(ActionError, match=r"expected \(1, 7\)"):
        check_chunk(np.zeros(7), horizon=1)  # a bare action is not a chunk


@pytest.mark.parametrize("bad, reason", [(np.nan, "NaN or inf"), (2.0, "out of range")])
def test_check_chunk_names_the_bad_action_index(bad, reason):
    chunk = np.zeros((4, 7))
    chunk[2, 1] = bad
    with pytest.raises(ActionError, match=f"plan action 2 (contains|is) {reason}"):
        check_chunk(chunk, horizon=4, source="plan")


def test_check_chunk_clips_each_action():
    chunk = np.array([[0.5] * 7, [1.0004] * 7])
    out = check_chunk(chunk, horizon=2)
    assert out.shape == (2, 7)
    np.testing.assert_array_equal(out, [[0.5] * 7, [1.0] * 7])


def test_executor_pops_in_order_until_empty():
    ex = ChunkExecutor()
    assert ex.empty and len(ex.remaining) == 0
    chunk = np.arange(21, dtype=float).reshape(3, 7) / 100
    ex.load(chunk)
    assert not ex.empty
    np.testing.assert_array_equal(ex.remaining, chunk)
    np.testing.assert_array_equal(ex.pop(), chunk[0])
    np.testing.assert_array_equal(ex.remaining, chunk[1:])
    np.testing.assert_array_equal(ex.pop(), chunk[1])
    np.testing.assert_array_equal(ex.pop(), chunk[2])
    assert ex.empty and ex.remaining.shape == (0, 7)
    with pytest.raises(IndexError, match="re-plan"):
        ex.pop()


def test_executor_pop_on_a_fresh_executor_raises():
    with pytest.raises(IndexError):
        ChunkExecutor().pop()


def test_executor_clear_drops_the_rest_and_load_starts_over():
    ex = ChunkExecutor()
    first = np.full((4, 7), 0.1)
    ex.load(first)
    ex.pop()
    ex.clear()  # a human intervention ended: the rest was planned for another state
    assert ex.empty and len(ex.remaining) == 0
    with pytest.raises(IndexError):
        ex.pop()
    second = np.full((2, 7), -0.3)
    ex.load(second)
    assert not ex.empty and len(ex.remaining) == 2
    np.testing.assert_array_equal(ex.pop(), second[0])
    # Loading mid-chunk replaces the chunk and restarts at its first action.
    ex.load(first)
    assert len(ex.remaining) == 4
    np.testing.assert_array_equal(ex.pop(), first[0])
