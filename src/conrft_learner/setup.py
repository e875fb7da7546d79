from setuptools import find_packages, setup

package_name = "conrft_learner"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "torch"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description="Learner node: offline and online ConRFT / CO-RFT stages over ROS topics, weight publishing, checkpoints, resume.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["learner_node = conrft_learner.learner_node:main"]},
)
