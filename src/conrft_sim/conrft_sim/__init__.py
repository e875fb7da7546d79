"""MuJoCo Franka simulation for ConRFT: scene, impedance control, tasks, scripted experts, gymnasium env.

Rendering needs an OpenGL backend chosen before mujoco is imported: set MUJOCO_GL=egl on headless machines.
"""
from conrft_sim.controller import CartesianImpedanceController, ImpedanceGains
from conrft_sim.env import ConRFTSimEnv
from conrft_sim.experts import Expert, ExpertNoise, make_expert
from conrft_sim.model import build_scene_xml
from conrft_sim.sim import FrankaSim, SimConfig
from conrft_sim.tasks import TASKS, Task, make_task

__all__ = [
    "CartesianImpedanceController", "ConRFTSimEnv", "Expert", "ExpertNoise", "FrankaSim", "ImpedanceGains",
    "SimConfig", "TASKS", "Task", "build_scene_xml", "make_expert", "make_task",
]
