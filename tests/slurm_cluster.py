"""A single-node SLURM cluster on this machine, from Debian's `slurm-wlm` and `munge`, for the profile and
rehearsal tests.

No systemd: munged, slurmctld and slurmd are started directly and stopped by PID. The node offers a fake GPU per CPU
(GRES whose `File=` is a character device: SLURM registers no GRES without one), so GPU requests are
scheduled and recorded as on a real cluster; the jobs themselves find no CUDA and run on CPU.

The cluster is configless (slurmd fetches slurm.conf from slurmctld and caches it where clients look,
/run/slurm/conf): the SLURM executor's job step drops `SLURM_CONF` from the environment of the `srun` it
starts, so a config only this process knows about would not reach it. For the same reason munged listens on
its default socket; a munged already running there is used as it is. A machine with a SLURM configuration of its
own is left alone (skip).
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

COMMANDS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "sinfo", "scancel")
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")
SYSTEM_CONFIG = Path("/etc/slurm/slurm.conf")
CONFIG_CACHE_LINK = Path("/run/slurm/conf")
CONTROLLER_PORT = 16817
PARTITIONS = ("cpu", "gpu")  # the partitions profiles/slurm asks for: one node serves both
# The profile's first status check after 40 s suits a busy cluster; on this one, whose controller keeps finished
# jobs for MinJobAge (far over 3x this), most of a tiny job's time would be spent waiting for that check.
STATUS_POLLING = ("--slurm-init-seconds-before-status-checks", "3")


def remove_link_left_by_a_killed_run() -> None:
    """Unlink /run/slurm/conf where it leads into the spool of one of these clusters whose slurmd no longer runs:
    a test run killed before `__exit__` leaves it, and it would otherwise make every later run skip the cluster
    tests as if the machine had a SLURM configuration of its own."""
    if not CONFIG_CACHE_LINK.is_symlink():
        return
    root = Path(os.readlink(CONFIG_CACHE_LINK)).parent.parent  # <root>/spool/conf-cache
    if not (root / "gres.conf").exists() or _running(root / "slurmd.pid"):
        return
    CONFIG_CACHE_LINK.unlink()


def _running(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return False
    return True


def unavailable_reason() -> str | None:
    """Why a cluster cannot be started here, or None."""
    missing = [name for name in COMMANDS if shutil.which(name) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "slurmd must run as root"
    if SYSTEM_CONFIG.exists() or CONFIG_CACHE_LINK.exists():
        return "this machine has a SLURM configuration of its own; not touching it"
    with tempfile.TemporaryDirectory() as scratch:
        try:
            _make_fake_gpu(Path(scratch) / "gpu0")
        except PermissionError:
            return "no permission to create the fake GPU's device node (mknod)"
    return None


def _answers(path: Path) -> bool:
    """Whether a daemon listens on the UNIX socket `path` (the socket file of a munged that was killed stays)."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def _make_fake_gpu(path: Path) -> None:
    """A character device (/dev/null's numbers): SLURM registers a GRES only with one."""
    os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def _memory_mb() -> int:
    kilobytes = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return kilobytes // 1024 - 1024  # leave the OS some


class SingleNodeCluster:
    def __init__(self, root: Path):
        self.root = root
        self.node = socket.gethostname().split(".")[0]
        self.gpus = os.cpu_count()

    def __enter__(self) -> SingleNodeCluster:
        for directory in ("munge", "state", "spool", "log"):
            (self.root / directory).mkdir(mode=0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(128))
        key.chmod(0o400)
        for gpu in range(self.gpus):  # one per CPU, so that the node runs as many GPU jobs at once as it can
            _make_fake_gpu(self.root / f"gpu{gpu}")
        (self.root / "slurm.conf").write_text(self._slurm_conf())
        (self.root / "gres.conf").write_text(f"NodeName={self.node} Name=gpu File={self.root}/gpu[0-{self.gpus - 1}]\n")
        MUNGE_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        try:
            if not _answers(MUNGE_SOCKET):
                self._start(
                    [
                        "munged",
                        "--force",
                        f"--key-file={key}",
                        f"--pid-file={self.root / 'munge/munged.pid'}",
                        f"--log-file={self.root / 'munge/munged.log'}",
                        f"--seed-file={self.root / 'munge/seed'}",
                    ]
                )
            self._start(["slurmctld", "-f", str(self.root / "slurm.conf")])
            self._start(["slurmd", "--conf-server", f"localhost:{CONTROLLER_PORT}"])
            self._wait_for_idle_node()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        subprocess.run(["scancel", "--user", "root"], capture_output=True)
        for pid_file in ("slurmd.pid", "slurmctld.pid", "munge/munged.pid"):
            path = self.root / pid_file
            if path.exists():
                try:
                    os.kill(int(path.read_text()), 15)
                except ProcessLookupError:
                    pass
        if CONFIG_CACHE_LINK.is_symlink():
            CONFIG_CACHE_LINK.unlink()

    def job(self, job_id: str) -> dict[str, str]:
        """`scontrol show job` as a mapping (the controller keeps finished jobs for MinJobAge)."""
        shown = subprocess.run(
            ["scontrol", "show", "job", "--oneliner", job_id], capture_output=True, text=True, check=True
        ).stdout
        return dict(field.split("=", 1) for field in shown.split() if "=" in field)

    def log(self, daemon: str) -> str:
        return (self.root / "log" / f"{daemon}.log").read_text()

    def _slurm_conf(self) -> str:
        # MinJobAge: finished jobs stay visible to squeue, which the profile polls (>= 3x its first status
        # check) and to scontrol, which the test reads at the end of the run.
        return f"""\
ClusterName=robustlm-test
SlurmctldHost={self.node}
SlurmctldPort={CONTROLLER_PORT}
SlurmdPort={CONTROLLER_PORT + 1}
SlurmctldParameters=enable_configless
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.root / "log/slurmctld.log"}
SlurmdLogFile={self.root / "log/slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
GresTypes=gpu
MinJobAge=7200
ReturnToService=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={self.node} CPUs={os.cpu_count()} RealMemory={_memory_mb()} Gres=gpu:{self.gpus} State=UNKNOWN
""" + "".join(f"PartitionName={name} Nodes=ALL MaxTime=INFINITE State=UP\n" for name in PARTITIONS)

    def _start(self, command: list[str]) -> None:
        started = subprocess.run(command, capture_output=True, text=True)
        if started.returncode != 0:
            raise RuntimeError(f"{command[0]} did not start: {started.stderr.strip()}")

    def _wait_for_idle_node(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sinfo = subprocess.run(["sinfo", "--noheader", "--format=%t"], capture_output=True, text=True)
            state = sinfo.stdout.strip()
            if state == "idle":
                return
            time.sleep(1)
        raise RuntimeError(f"the SLURM node never became idle (state {state!r}):\n{self.log('slurmd')[-2000:]}")
