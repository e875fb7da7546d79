from setuptools import find_packages, setup

package_name = "conrft_policy"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy", "opencv-python-headless"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description="Camera and robot-state publishers, the policy node (chunk execution, safety, transitions, weight hot-swap), its target streamer, the episode manager and the learned success detector.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "policy_node = conrft_policy.policy_node:main",
        "target_streamer = conrft_policy.target_streamer:main",
        "camera_publisher = conrft_policy.camera_publisher:main",
        "robot_state_publisher = conrft_policy.robot_state_publisher:main",
        "home_reset = conrft_policy.home_reset:main",
        "success_detector = conrft_policy.success_detector:main",
    ]},
)
