"""A Fast DDS discovery server as a plain ROS 2 process:

    python -m conrft_bringup.discovery_server [--profile config/dds/discovery_server.xml]

On a full ROS 2 install `fastdds discovery -x config/dds/discovery_server.xml` runs the same server; the PyPI
wheels used here ship that command without the Python module (psutil) and library path it needs. The server is
the rmw's own participant, made a SERVER by the profile (FASTDDS_DEFAULT_PROFILES_FILE); it runs until SIGINT or
SIGTERM. Clients: config/dds/discovery_server.env.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve()
while not (ROOT / "config").is_dir() and ROOT.parent != ROOT:  # the workspace root, from src/ or build/
    ROOT = ROOT.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="discovery_server", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", type=Path, default=ROOT / "config" / "dds" / "discovery_server.xml",
                        help="Fast DDS XML with a default SERVER participant profile")
    args = parser.parse_args(argv)
    if "<discoveryProtocol>SERVER</discoveryProtocol>" not in args.profile.read_text():
        parser.error(f"{args.profile} defines no SERVER participant")
    # Read when the participant is created: the profile, and no server of its own to be a client of. The range
    # must not be LOCALHOST (env.sh's default), which would keep the clients of other hosts out.
    os.environ["FASTDDS_DEFAULT_PROFILES_FILE"] = str(args.profile)
    os.environ.pop("ROS_DISCOVERY_SERVER", None)
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SUBNET"
    import rclpy
    from rclpy.executors import ExternalShutdownException

    rclpy.init()
    node = rclpy.create_node("discovery_server")
    node.get_logger().info(f"discovery server up ({args.profile.name})")
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
