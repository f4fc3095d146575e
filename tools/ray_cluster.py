"""A throwaway Ray cluster on this machine, for the engine tests and bench/engines.py: a head node and more nodes
joined with `ray start --address` (each stands for another machine), all in a private temp folder.

It is stopped by the PIDs of its own processes (those naming its temp folder, and their children), never with
`ray stop`, which stops every Ray process of the user on the machine, other people's clusters included.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

OBJECT_STORE_BYTES = 100_000_000  # the results are small arrays; Ray's default takes 30% of the machine's memory


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def ray_command() -> str:
    """The `ray` CLI next to this Python (the environment uv.lock installed), else the one on PATH."""
    beside = Path(sys.executable).with_name("ray")
    return str(beside) if beside.is_file() else "ray"


def live_processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process that is not a zombie."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # it ended while we looked
            continue
        state, parent = stat.rsplit(")", 1)[1].split()[:2]
        if state != "Z":
            found[int(entry.name)] = (int(parent), command)
    return found


@dataclass
class LocalCluster:
    temp_dir: Path
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def processes(self) -> dict[int, str]:
        """This cluster's live processes: those naming its temp folder and their descendants (workers, agents)."""
        everything = live_processes()
        caller, pid = set(), os.getpid()  # this process and its parents, should their command line name the folder
        while pid > 1 and pid not in caller:
            caller.add(pid)
            pid = everything.get(pid, (0, ""))[0]
        ours = {pid for pid, (_, command) in everything.items() if str(self.temp_dir) in command} - caller
        grew = True
        while grew:
            children = {pid for pid, (parent, _) in everything.items() if parent in ours} - ours
            ours |= children
            grew = bool(children)
        return {pid: everything[pid][1] for pid in ours}

    def cpu_ticks(self) -> dict[int, int]:
        """pid -> CPU time (user + system, in clock ticks) of each live process of the cluster."""
        ticks = {}
        for pid in self.processes():
            with contextlib.suppress(OSError):
                fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
                ticks[pid] = int(fields[11]) + int(fields[12])
        return ticks

    def processes_titled(self, title: str) -> list[int]:
        """PIDs of this cluster's workers whose process title starts with `title` (Ray sets `ray::<task>`)."""
        return sorted(pid for pid, command in self.processes().items() if command.startswith(title))

    def stop_hidden_nodes(self, wait_s: float = 30) -> None:
        """SIGKILL the nodes started with `hidden` folders (in a mount namespace of their own): the machines that do
        the work going away, while the head node (and a driver on it) stays."""
        ours = os.readlink("/proc/self/ns/mnt")

        def elsewhere() -> list[int]:
            found = []
            for pid in self.processes():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/ns/mnt") != ours:
                        found.append(pid)
            return found

        kill_until_gone(elsewhere, wait_s)

    def stop(self, wait_s: float = 30) -> None:
        """SIGKILL every process of the cluster (what `ray stop --force` does to every cluster on the machine; a
        graceful SIGTERM takes the GCS 20 s here, and the folder and the data are thrown away anyway)."""
        kill_until_gone(self.processes, wait_s)


def kill_until_gone(find: Callable[[], Iterable[int]], wait_s: float) -> None:
    """SIGKILL the processes `find` names, asking it again every 0.1 s, until it names none or `wait_s` has passed."""
    deadline = time.monotonic() + wait_s
    while (left := list(find())) and time.monotonic() < deadline:
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def can_hide_paths() -> bool:
    """Whether this process may start others in a mount namespace of their own (root, or a user namespace)."""
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True)
    return probe.returncode == 0


def hiding(paths: Sequence[Path], command: list[str], scratch: Path) -> list[str]:
    """`command` in a mount namespace of its own where each of `paths` is an empty folder: it, and every process
    it starts (a Ray node's raylet and workers), cannot see what is there. Except this Python environment, when
    it lies inside one of them (`./dev.sh` makes `.venv` in the checkout): another machine has its own copy of
    the environment, as a node of a real cluster does, at the same path. `scratch`: an empty folder of ours."""
    environment = Path(sys.prefix)
    steps = []
    for path in paths:
        if environment.is_relative_to(path) and environment != Path(path):
            kept, env = shlex.quote(str(scratch)), shlex.quote(str(environment))
            steps += [
                f"mount --bind {env} {kept}",
                f"mount -t tmpfs none {shlex.quote(str(path))}",
                f"mkdir -p {env}",
                f"mount --move {kept} {env}",
            ]
        else:
            steps.append(f"mount -t tmpfs none {shlex.quote(str(path))}")
    script = " && ".join([*steps, f"exec {shlex.join(command)}"])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


@contextlib.contextmanager
def local_cluster(
    nodes: int = 2,
    cpus_per_node: int = 2,
    worker_niceness: int | None = None,
    head_cpus: int | None = None,
    hidden: Sequence[Path] = (),
) -> Iterator[LocalCluster]:
    """Start the cluster, yield it, stop it (also when starting fails half-way).

    `worker_niceness`: Ray runs its workers at nice 15 by default, so they yield to everything else on a shared
    machine; 0 makes them compete like the stage's own threads (for comparing engines). `head_cpus`: 0 sends
    every task and actor to the other nodes. `hidden`: folders the other nodes cannot see (a mount namespace each;
    see `can_hide_paths`), like the nodes of a cluster without a shared filesystem."""
    # Short folder: Ray's unix sockets live under it (107-byte limit on a socket path)
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="ray", dir="/tmp")), free_port())
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"} | {"RAY_USAGE_STATS_ENABLED": "0"}
    if worker_niceness is not None:
        env["RAY_worker_niceness"] = str(worker_niceness)
    # Ray replaces 127.0.0.1 with the host's routable address on Linux and listens on every interface
    # (Ray 2.60 has no option to bind loopback only); the cluster lives only as long as the tests.
    every_node = [
        "--node-ip-address=127.0.0.1",
        "--num-gpus=0",
        f"--temp-dir={cluster.temp_dir}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]
    head = ["--head", f"--port={cluster.port}", "--include-dashboard=false", f"--dashboard-port={free_port()}"]
    try:
        for node in range(nodes):
            role = head if node == 0 else [f"--address={cluster.address}"]
            cpus = head_cpus if node == 0 and head_cpus is not None else cpus_per_node
            command = [
                ray_command(),
                "start",
                *role,
                *every_node,
                f"--num-cpus={cpus}",
                f"--dashboard-agent-listen-port={free_port()}",
            ]
            if node and hidden:
                scratch = cluster.temp_dir / f"kept{node}"
                scratch.mkdir()
                command = hiding(hidden, command, scratch)
            started = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
            if started.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed:\n{(started.stdout + started.stderr)[-3000:]}")
        yield cluster
    finally:
        cluster.stop()
        left = cluster.processes()
        shutil.rmtree(cluster.temp_dir, ignore_errors=True)
        if left:
            raise RuntimeError(f"Ray processes still running after stop: {left}")
