"""MuJoCo Franka simulation for ConRFT."""
