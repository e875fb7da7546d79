"""`conrft session CONFIG [name:=value ...]`: a training session's nodes as separate processes, where
`ros2 launch` is absent. The same executables and parameter files as the launch files in `launch/`.

A session file:

    args:                       # defaults; override on the command line as name:=value (like ros2 launch)
      run_dir: out/session
    session:
      use_sim_time: true        # set on every node
      stop_when_exits: [learner]  # the session ends when one of these exits by itself with status 0
      timeout: 0                # s; 0 = none
    nodes:
      learner:                  # the node name
        package: conrft_learner
        executable: learner_node
        params: [learner.yaml]              # parameter files, relative to the session file's folder, $(arg
                                            # name) allowed; one under controllers/ is a controller preset
                                            # (conrft_core.robot.controllers), checked before any node starts
        parameters: {run_dir: $(arg run_dir)}  # single parameters, after the files
        enabled: true             # or $(arg name) with a true/false argument (ros2 launch's IfCondition)
        namespace: ""             # the node's namespace (ros2 launch's Node(namespace=...))
        remap: {/clock: /robot_1/clock}  # name remappings (Node(remappings=...)), absolute names too
        stream_of: policy         # a target streamer: started only when node `policy` streams (stream_rate > 0),
                                  # with its topics, frame, safety box and rates (conrft_core.robot.relay)
    fleet:                        # optional: several robots, each a copy of some nodes in a namespace of its own
      robots: $(arg robots)       # how many (>= 1)
      name: robot_{k}             # robot k's namespace and robot name, k = 1..robots
      nodes: [sim, policy, teleop]  # the nodes copied per robot (the originals are not started)
      remap: [/clock, /sim/reset]   # absolute names each copy moves under its namespace (/robot_k/clock ...)
      parameters:                 # per-copy parameters, {k} = the robot's number, {name} = its name
        policy: {robot_name: "{name}", seed: "{k}00000"}
      robots_parameter: learner.robots  # a node's parameter set to the list of robot names

A copy of node N for robot R runs as /R/N (shown as `[R/N]`), its parameter files' N block applying to it.

Every node's output is streamed with a `[name]` prefix. Ctrl-C, SIGTERM (or the stop condition) stops all nodes
with SIGINT (SIGKILL after `stop_timeout`); a session killed outright takes its nodes with it (each gets SIGTERM
when the session process dies). Exit status: 0 when the session ended by its stop condition or timeout, 1 when
a node crashed (exited by itself with a non-zero status), 130 on Ctrl-C, 143 on SIGTERM. A node outside
stop_when_exits that finishes with status 0 just leaves the session.
"""
from __future__ import annotations

import copy
import ctypes
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from conrft_core.config import ConfigError, from_dict, load_yaml
from conrft_core.data.episode import check_robot_name
from conrft_core.robot.controllers import PRESETS_DIR, load_preset
from conrft_core.robot.node_params import file_parameters
from conrft_core.robot.relay import streamer_parameters

ARG = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class NodeSpec:
    package: str
    executable: str
    params: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    enabled: bool | str = True  # a string is $(arg name), resolved by load_session
    namespace: str = ""
    remap: dict = field(default_factory=dict)
    stream_of: str = ""  # the policy node whose step targets this node (a target streamer) streams


@dataclass
class FleetSpec:
    robots: int | str = 1  # a string is $(arg name)
    name: str = "robot_{k}"
    nodes: list[str] = field(default_factory=list)
    remap: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    robots_parameter: str = ""  # NODE.PARAM set to the robot names; "" = none


@dataclass
class SessionOptions:
    use_sim_time: bool = False
    stop_when_exits: list[str] = field(default_factory=list)
    timeout: float = 0.0
    stop_timeout: float = 10.0


@dataclass
class SessionConfig:
    session: SessionOptions = field(default_factory=SessionOptions)
    args: dict = field(default_factory=dict)
    nodes: dict = field(default_factory=dict)
    fleet: FleetSpec | None = None


def _substitute(value, args: dict, where: str):
    """$(arg name) in strings; a value that is exactly one $(arg name) takes the argument's YAML type."""
    if isinstance(value, str) and ARG.fullmatch(value) and ARG.fullmatch(value).group(1) in args:
        arg = args[ARG.fullmatch(value).group(1)]
        return yaml.safe_load(arg) if isinstance(arg, str) and arg else arg
    if isinstance(value, str):
        def repl(m):
            if m.group(1) not in args:
                raise ConfigError(f"{where} uses $(arg {m.group(1)}), which the session's args do not define")
            return str(args[m.group(1)])
        return ARG.sub(repl, value)
    if isinstance(value, list):
        return [_substitute(v, args, where) for v in value]
    return value


def load_session(path: str | Path, overrides: dict[str, str]) -> tuple[SessionConfig, dict[str, NodeSpec]]:
    path = Path(path)
    cfg = from_dict(SessionConfig, load_yaml(path), "")
    unknown = sorted(set(overrides) - set(cfg.args))
    if unknown:
        raise ConfigError(f"unknown session argument '{unknown[0]}'; {path} defines: {', '.join(cfg.args) or 'none'}")
    args = {**cfg.args, **overrides}
    if not cfg.nodes:
        raise ConfigError(f"{path} defines no nodes")
    nodes = {}
    for name, raw in cfg.nodes.items():
        spec = from_dict(NodeSpec, raw, f"nodes.{name}")
        spec.enabled = _substitute(spec.enabled, args, f"nodes.{name}.enabled")
        if not isinstance(spec.enabled, bool):
            raise ConfigError(f"nodes.{name}.enabled must be true or false, got {spec.enabled!r}")
        if not spec.enabled:
            continue
        spec.params = [str(path.parent / _substitute(p, args, f"nodes.{name}.params")) for p in spec.params]
        for p in spec.params:
            if Path(p).parent.name == PRESETS_DIR:  # controller:=NAME: an unknown name or a bad key, named now
                load_preset(p)
            elif not Path(p).is_file():
                raise ConfigError(f"nodes.{name}.params: parameter file {p} does not exist")
        spec.parameters = {k: _substitute(v, args, f"nodes.{name}.parameters.{k}") for k, v in spec.parameters.items()}
        nodes[name] = spec
    nodes = resolve_streamers(nodes)
    if cfg.fleet is not None:
        nodes = _expand_fleet(cfg.fleet, nodes, args)
    missing = sorted(set(cfg.session.stop_when_exits) - set(nodes))
    if missing:
        raise ConfigError(f"session.stop_when_exits names '{missing[0]}', which is not a node of {path}")
    return cfg, nodes


def resolve_streamers(nodes: dict[str, NodeSpec]) -> dict[str, NodeSpec]:
    """Every node with `stream_of` given that policy node's stream parameters (its parameter files, then its
    parameters), or left out where that node sends one target per step itself (stream_rate 0)."""
    out = {}
    for name, spec in nodes.items():
        if spec.stream_of:
            policy = nodes.get(spec.stream_of)
            if policy is None:
                raise ConfigError(f"nodes.{name}.stream_of names '{spec.stream_of}', which is not an enabled node")
            shared = streamer_parameters({**file_parameters(policy.params, spec.stream_of), **policy.parameters})
            if shared is None:
                continue
            spec.parameters = {**shared, **spec.parameters}
        out[name] = spec
    return out


def _expand_fleet(fleet: FleetSpec, nodes: dict[str, NodeSpec], args: dict) -> dict[str, NodeSpec]:
    """Every node of fleet.nodes copied once per robot (as "ROBOT/NODE", in namespace ROBOT), the others kept."""
    count = _substitute(fleet.robots, args, "fleet.robots")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ConfigError(f"fleet.robots must be a whole number >= 1, got {count!r}")
    unknown = sorted(set(fleet.nodes) - set(nodes)) or sorted(set(fleet.parameters) - set(fleet.nodes))
    if unknown:
        raise ConfigError(f"fleet names node '{unknown[0]}', which is not an enabled node copied per robot "
                          f"(fleet.nodes: {', '.join(fleet.nodes) or 'none'})")
    split = [n for n, spec in nodes.items() if spec.stream_of and (n in fleet.nodes) != (spec.stream_of in fleet.nodes)]
    if split:
        raise ConfigError(f"fleet.nodes must copy the target streamer '{split[0]}' and its policy node "
                          f"'{nodes[split[0]].stream_of}' per robot together, or neither")
    bad = [n for n in fleet.remap if not n.startswith("/")]
    if bad:
        raise ConfigError(f"fleet.remap entries must be absolute names (/clock), got {bad[0]!r}")
    names = [fleet.name.format(k=k) for k in range(1, count + 1)]
    for n in names:
        check_robot_name(n, "fleet.name")
    out = {n: spec for n, spec in nodes.items() if n not in fleet.nodes}
    for k, robot in enumerate(names, start=1):
        for node in fleet.nodes:
            spec = copy.deepcopy(nodes[node])
            spec.namespace = robot
            spec.remap = {**{name: f"/{robot}{name}" for name in fleet.remap}, **spec.remap}
            for key, value in fleet.parameters.get(node, {}).items():
                value = value.format(k=k, name=robot) if isinstance(value, str) else value
                spec.parameters[key] = yaml.safe_load(value) if isinstance(value, str) and value else value
            out[f"{robot}/{node}"] = spec
    if fleet.robots_parameter:
        node, _, key = fleet.robots_parameter.partition(".")
        if node not in out or not key:
            raise ConfigError(f"fleet.robots_parameter must be NODE.PARAM of a node not copied per robot, got "
                              f"{fleet.robots_parameter!r}")
        out[node].parameters[key] = names
    return out


def executable_path(package: str, executable: str) -> str:
    """Where `ros2 run package executable` would find it: <prefix>/lib/<package>/<executable>."""
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix

    try:
        exe = Path(get_package_prefix(package)) / "lib" / package / executable
    except PackageNotFoundError:
        raise ConfigError(f"package '{package}' is not installed; build the workspace (make setup) and "
                          f"`source ./env.sh`") from None
    if not os.access(exe, os.X_OK):
        raise ConfigError(f"package '{package}' has no executable '{executable}' ({exe})")
    return str(exe)


class Session:
    def __init__(self, cfg: SessionConfig, nodes: dict[str, NodeSpec], out=sys.stdout):
        self.cfg, self.nodes, self.out = cfg, nodes, out
        self.procs: dict[str, subprocess.Popen] = {}
        self.stopping = False
        self._lock = threading.Lock()
        self._tmp = tempfile.TemporaryDirectory(prefix="conrft-session-")

    def _command(self, name: str, spec: NodeSpec) -> list[str]:
        node = name.rpartition("/")[2]  # a fleet copy is "ROBOT/NODE"
        cmd = [executable_path(spec.package, spec.executable), "--ros-args", "-r", f"__node:={node}"]
        if spec.namespace:
            cmd += ["-r", f"__ns:=/{spec.namespace}"]
        for src, dst in spec.remap.items():
            cmd += ["-r", f"{src}:={dst}"]
        # A parameter file's NODE block applies to /NODE only: a namespaced node reads it as /NS/NODE.
        key = f"/{spec.namespace}/{node}" if spec.namespace else node
        tag = name.replace("/", "_")
        for i, p in enumerate(spec.params):
            if spec.namespace:
                blocks = {key if k == node else k: v for k, v in (yaml.safe_load(Path(p).read_text()) or {}).items()}
                p = Path(self._tmp.name) / f"{tag}_{i}_{Path(p).name}"
                p.write_text(yaml.safe_dump(blocks))
            cmd += ["--params-file", str(p)]
        params = dict(spec.parameters)
        if self.cfg.session.use_sim_time:
            params["use_sim_time"] = True
        if params:
            extra = Path(self._tmp.name) / f"{tag}.yaml"
            extra.write_text(yaml.safe_dump({key: {"ros__parameters": params}}))
            cmd += ["--params-file", str(extra)]
        return cmd

    def _pump(self, name: str, stream) -> None:
        for line in iter(stream.readline, ""):
            with self._lock:
                self.out.write(f"[{name}] {line}")
                self.out.flush()

    def start(self) -> None:
        commands = {name: self._command(name, spec) for name, spec in self.nodes.items()}  # all errors first
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name, cmd in commands.items():  # every fork before the first thread: preexec_fn is unsafe with threads
            self.procs[name] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                                env=env, start_new_session=True, preexec_fn=_die_with_parent)
        for name, proc in self.procs.items():
            threading.Thread(target=self._pump, args=(name, proc.stdout), daemon=True).start()
        self.say(f"started {', '.join(f'{n} (pid {p.pid})' for n, p in self.procs.items())}")

    def say(self, text: str) -> None:
        with self._lock:
            self.out.write(f"[session] {text}\n")
            self.out.flush()

    def wait(self) -> int:
        """Until the stop condition, a crash or the timeout; returns the exit status (see module doc)."""
        deadline = time.monotonic() + self.cfg.session.timeout if self.cfg.session.timeout > 0 else None
        running = set(self.procs)
        while True:
            for name in sorted(running):
                code = self.procs[name].poll()
                if code is None:
                    continue
                running.discard(name)
                if code != 0:
                    self.say(f"{name} crashed (exit status {code}): stopping the session")
                    return self.stop(1)
                if name in self.cfg.session.stop_when_exits:
                    self.say(f"{name} finished: stopping the session")
                    return self.stop(0)
                self.say(f"{name} finished")
            if deadline is not None and time.monotonic() > deadline:
                self.say(f"timeout of {self.cfg.session.timeout} s reached: stopping the session")
                return self.stop(0)
            time.sleep(0.2)

    def stop(self, status: int) -> int:
        """SIGINT to every node still running, SIGKILL to those that do not stop in time."""
        self.stopping = True
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        deadline = time.monotonic() + self.cfg.session.stop_timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"{name} did not stop within {self.cfg.session.stop_timeout} s: killing it")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._tmp.cleanup()
        return status


def _die_with_parent() -> None:
    """In a node's process before it starts: SIGTERM when the session process dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so that no node outlives its session."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)


class Terminated(Exception):
    """SIGTERM to the session."""


def _terminated(signum, frame):
    raise Terminated


def run_session(path: str | Path, overrides: dict[str, str]) -> int:
    cfg, nodes = load_session(path, overrides)
    session = Session(cfg, nodes)
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        session.start()
        return session.wait()
    except (KeyboardInterrupt, Terminated) as exc:
        status = 143 if isinstance(exc, Terminated) else 130
        session.say(f"{'terminated' if status == 143 else 'interrupted'}: stopping every node")
        session.stop(status)
        return status
    finally:
        if any(p.poll() is None for p in session.procs.values()):
            session.stop(1)
        signal.signal(signal.SIGTERM, previous)
