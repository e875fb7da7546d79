from setuptools import find_packages, setup

package_name = "conrft_teleop"

setup(
    name=package_name,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/" + package_name]),
        ("share/" + package_name, ["package.xml"]),
    ],
    install_requires=["setuptools", "numpy"],
    zip_safe=True,
    maintainer="ConRFT developers",
    maintainer_email="dev@conrft.dev",
    description="Teleoperation node: SpaceMouse (spacenav), keyboard and a scripted intervener; publishes intervention state.",
    license="Apache-2.0",
    entry_points={"console_scripts": ["teleop_node = conrft_teleop.teleop_node:main"]},
)
