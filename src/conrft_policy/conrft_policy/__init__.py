"""Camera and robot-state publishers, the policy node (chunk execution, safety, transitions, weight hot-swap) and the episode manager."""
