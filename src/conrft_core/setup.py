from setuptools import find_packages, setup

package_name = "conrft_core"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    # What the code imports (test_dependencies checks it), so `pip install src/conrft_core` is a working library.
    install_requires=["setuptools", "matplotlib", "numpy", "opencv-python-headless", "pyyaml", "rosbags",
                      "safetensors", "scipy", "tensorboard", "torch", "tqdm"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description=("ConRFT library without ROS: learning (models, losses, agents, training stages), data (episodes, "
                 "replay, rosbag2 bags, journal) and the robot contract the nodes rely on. Imports no rclpy."),
    license="Apache-2.0",
    entry_points={"console_scripts": []},
)
