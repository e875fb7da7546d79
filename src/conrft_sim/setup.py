from setuptools import find_packages, setup

package_name = "conrft_sim"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "gymnasium", "matplotlib", "mujoco", "numpy", "scipy", "torch", "tqdm"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description="MuJoCo Franka simulation: scene, Cartesian impedance control law, tasks, scripted experts, gymnasium env and the ROS 2 sim node.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["sim_node = conrft_sim.sim_node:main"]},
)
