from glob import glob
from setuptools import find_packages, setup

package_name = "conrft_bringup"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
        # The workspace-level launch/ and config/ folders are installed with this package.
        ("share/" + package_name + "/launch", glob("../../launch/*.launch.py")),
        ("share/" + package_name + "/config", glob("../../config/*.yaml")),
        ("share/" + package_name + "/config/dds", glob("../../config/dds/*")),
        ("share/" + package_name + "/config/controllers", glob("../../config/controllers/*.yaml")),
        ("share/" + package_name + "/rviz", glob("rviz/*.rviz")),
    ],
    install_requires=["setuptools", "numpy", "pyyaml", "torch", "tqdm"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description="Launch files, parameter files, RViz config, the demo recorder and the conrft command line.",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "conrft = conrft_bringup.cli:main",
        "demo_recorder = conrft_bringup.demo_recorder:main",
    ]},
)
