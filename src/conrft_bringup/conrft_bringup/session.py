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

Every node's output is streamed with a `[name]` prefix. Ctrl-C (or the stop condition) stops all nodes with
SIGINT (SIGKILL after `stop_timeout`). Exit status: 0 when the session ended by its stop condition or
timeout, 1 when a node crashed (exited by itself with a non-zero status), 130 on Ctrl-C. A node outside
stop_when_exits that finishes with status 0 just leaves the session.
"""
from __future__ import annotations

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
from conrft_core.robot.controllers import PRESETS_DIR, load_preset

ARG = re.compile(r"\$\(arg ([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass
class NodeSpec:
    package: str
    executable: str
    params: list[str] = field(default_factory=list)
    parameters: dict = field(default_factory=dict)
    enabled: bool | str = True  # a string is $(arg name), resolved by load_session


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
    missing = sorted(set(cfg.session.stop_when_exits) - set(nodes))
    if missing:
        raise ConfigError(f"session.stop_when_exits names '{missing[0]}', which is not a node of {path}")
    return cfg, nodes


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
        cmd = [executable_path(spec.package, spec.executable), "--ros-args", "-r", f"__node:={name}"]
        for p in spec.params:
            cmd += ["--params-file", p]
        params = dict(spec.parameters)
        if self.cfg.session.use_sim_time:
            params["use_sim_time"] = True
        if params:
            extra = Path(self._tmp.name) / f"{name}.yaml"
            extra.write_text(yaml.safe_dump({name: {"ros__parameters": params}}))
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
        for name, cmd in commands.items():
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                    start_new_session=True)
            self.procs[name] = proc
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


def run_session(path: str | Path, overrides: dict[str, str]) -> int:
    cfg, nodes = load_session(path, overrides)
    session = Session(cfg, nodes)
    previous = signal.getsignal(signal.SIGINT)
    try:
        session.start()
        return session.wait()
    except KeyboardInterrupt:
        session.say("interrupted: stopping every node")
        session.stop(130)
        return 130
    finally:
        if any(p.poll() is None for p in session.procs.values()):
            session.stop(1)
        signal.signal(signal.SIGINT, previous)
