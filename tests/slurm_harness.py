"""A real single-node Slurm for tests: install it (Debian packages), start it in a directory, stop it.

    reason = unavailable()                 # None, or why no Slurm can be started here
    with SlurmCluster(tmp_dir) as cluster: # munged, slurmctld, slurmd, each started by us
        env = cluster.env                  # SLURM_CONF for sbatch / squeue / scancel
        ...
    # on exit each daemon this harness started is stopped by its pid (SIGTERM, then SIGKILL)

The cluster is the recipe of issue 20: Debian's slurm-wlm (22.05) with munge, one node with this
machine's CPUs and memory and two fake GPUs (gres `gpu` whose `File=` is /dev/null and /dev/zero:
Slurm hands them out and sets CUDA_VISIBLE_DEVICES, nothing computes on them), partition `debug`,
no accounting daemon (so `sacct` has nothing to say: the profile's status command is squeue),
`proctrack/linuxproc` and `task/none` (no cgroups inside a container). Every file the daemons
write (state, spool, logs, pid files) lies under the given directory, munge's socket in a temp
directory of its own (user munge must reach it), so two clusters never share anything and a stopped
one leaves nothing running. It needs root (the
daemons, and apt) and is refused otherwise with the reason.

Run as a script it starts a cluster, prints the environment to use, and stops it on Ctrl-C:
`python tests/slurm_harness.py /tmp/slurm-play`.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("munged", "slurmctld", "slurmd")
SBIN = Path("/usr/sbin")
FAKE_GPUS = ("/dev/null", "/dev/zero")
_LIBC = ctypes.CDLL(None, use_errno=True)
# Job steps find the config only at its standard path: the jobstep plugin (0.6.1) drops SLURM_CONF
# from the environment of the `srun` it runs inside each job. The harness links it there while its
# cluster runs, never over a file it did not link itself.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
MARK = ".diffsec-slurm-harness"


def _system_conf_is_ours() -> bool:
    """No /etc/slurm/slurm.conf, or a link this harness made (a stale one after a killed run too)."""
    if not SYSTEM_CONF.is_symlink():
        return not SYSTEM_CONF.exists()
    return (Path(os.readlink(SYSTEM_CONF)).parent.parent / MARK).exists() or not SYSTEM_CONF.exists()


def _die_with_parent() -> None:
    """In a daemon's child before exec: SIGTERM it when the process that started it dies (a killed
    test run leaves no daemon behind)."""
    _LIBC.prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG


def _have_binaries() -> bool:
    return all((SBIN / d).exists() for d in DAEMONS) and shutil.which("sbatch") is not None


def unavailable(install: bool = True, timeout: float = 300) -> str | None:
    """None when a Slurm can be started here (installing the Debian packages first if `install`
    and they are missing); else the reason, for a skip."""
    if sys.platform != "linux":
        return f"Slurm needs Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"Slurm's daemons need root (this test runs as uid {os.geteuid()})"
    if not _system_conf_is_ours():
        return f"this machine has its own {SYSTEM_CONF} (a real Slurm): the harness will not replace it"
    if _have_binaries():
        return None
    if not install:
        return "slurm-wlm and munge are not installed"
    if shutil.which("apt-get") is None:
        return "slurm-wlm is not installed and there is no apt-get to install it"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return f"`{' '.join(cmd)}` took over {timeout:.0f} s"
        if p.returncode != 0:
            last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            return f"`{' '.join(cmd)}` failed: {last}"
    return None if _have_binaries() else "apt-get installed slurm-wlm but its daemons are missing"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


class SlurmCluster:
    """One node (this machine), partition `debug`, `n_gpus` fake GPUs; daemons in the foreground,
    children of this process, stopped by pid."""

    def __init__(self, root: Path, n_gpus: int = 2, cpus: int | None = None, mem_mb: int | None = None):
        self.root = Path(root).resolve()
        self.host = socket.gethostname().split(".")[0]
        self.n_gpus = n_gpus
        self.cpus = cpus or os.cpu_count() or 1
        # what slurmd finds must cover what the node declares, or the node is drained
        self.mem_mb = mem_mb or min(20000, int(_mem_mb() * 0.8))
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"
        # munged runs as user munge, which must reach its directory: not under pytest's 0700 tmp
        self.munge_dir = Path(tempfile.mkdtemp(prefix="diffsec-munge-"))
        self.munge_socket = self.munge_dir / "munge.socket"

    @property
    def env(self) -> dict[str, str]:
        """The environment for Slurm's client commands (and everything that calls them)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    # ---- configuration ----------------------------------------------------------------------
    def write_config(self) -> None:
        r = self.root
        for d in ("etc", "state", "spool", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        (r / MARK).touch()
        gres = ",".join(FAKE_GPUS[: self.n_gpus])
        self.conf.write_text("\n".join([
            "ClusterName=diffsec-test",
            f"SlurmctldHost={self.host}",
            "SlurmUser=root",
            "SlurmdUser=root",
            "AuthType=auth/munge",
            "CredType=cred/munge",
            f"AuthInfo=socket={self.munge_socket}",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={r / 'state'}",
            f"SlurmdSpoolDir={r / 'spool'}",
            f"SlurmctldPidFile={r / 'slurmctld.pid'}",
            f"SlurmdPidFile={r / 'slurmd.pid'}",
            f"SlurmctldLogFile={r / 'log' / 'slurmctld.log'}",
            f"SlurmdLogFile={r / 'log' / 'slurmd.log'}",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "GresTypes=gpu",
            "AccountingStorageType=accounting_storage/none",
            "JobAcctGatherType=jobacct_gather/none",
            "JobCompType=jobcomp/none",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "ReturnToService=2",
            "MinJobAge=3600",   # finished jobs stay in squeue for the checks after a run
            "SlurmctldTimeout=30",
            "SlurmdTimeout=30",
            f"NodeName={self.host} CPUs={self.cpus} RealMemory={self.mem_mb} Gres=gpu:{self.n_gpus} State=UNKNOWN",
            f"PartitionName=debug Nodes={self.host} Default=YES MaxTime=INFINITE State=UP",
            "",
        ]))
        # one File= per fake GPU: Slurm counts and assigns them by this list (CUDA_VISIBLE_DEVICES = index)
        (r / "etc" / "gres.conf").write_text(f"NodeName={self.host} Name=gpu File={gres}\n")

    # ---- daemons ------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], **kw) -> None:
        with open(self.root / "log" / f"{name}.out", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=self.env,
                                                start_new_session=True, preexec_fn=_die_with_parent, **kw)

    def _wait(self, what: str, ok, timeout: float) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise RuntimeError(f"{dead[0]} exited with {self.procs[dead[0]].returncode} while waiting for "
                                   f"{what}:\n{self.tail(dead[0])}")
            if ok():
                return
            time.sleep(0.2)
        raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}:\n{self.tail('slurmd')}")

    def tail(self, name: str, n: int = 3000) -> str:
        texts = []
        for f in (self.root / "log").glob(f"{name}*"):
            texts.append(f"--- {f.name}\n{f.read_text(errors='replace')[-n:]}")
        return "\n".join(texts)

    def start(self, timeout: float = 60) -> SlurmCluster:
        self.write_config()
        if not _system_conf_is_ours():
            raise RuntimeError(f"{SYSTEM_CONF} exists and is not this harness's link")
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.unlink(missing_ok=True)
        SYSTEM_CONF.symlink_to(self.conf)
        self.linked = True
        munge_dir = self.munge_dir
        shutil.chown(munge_dir, "munge", "munge")
        os.chmod(munge_dir, 0o700)
        self._spawn("munged", [str(SBIN / "munged"), "-F", "--force", f"--socket={self.munge_socket}",
                               f"--pid-file={munge_dir / 'munged.pid'}", f"--seed-file={munge_dir / 'munged.seed'}",
                               f"--log-file={munge_dir / 'munged.log'}"], user="munge", group="munge")
        self._wait("munged's socket", self.munge_socket.exists, timeout)
        os.chmod(munge_dir, 0o755)   # root's daemons and clients reach the socket
        self._spawn("slurmctld", [str(SBIN / "slurmctld"), "-D", "-i", "-f", str(self.conf)])
        self._wait("slurmctld", lambda: self._run("scontrol", "ping").returncode == 0
                   and "UP" in self._run("scontrol", "ping").stdout, timeout)
        self._spawn("slurmd", [str(SBIN / "slurmd"), "-D", "-f", str(self.conf)])
        self._wait("the node to be idle", lambda: self._run("sinfo", "-h", "-o", "%T").stdout.strip()
                   in ("idle", "mixed"), timeout)
        return self

    def _run(self, *cmd: str, timeout: float = 10) -> subprocess.CompletedProcess:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, env=self.env, timeout=timeout)
        except subprocess.TimeoutExpired:
            return subprocess.CompletedProcess(cmd, 124, "", f"{cmd[0]} timed out")

    def stop(self, timeout: float = 15) -> None:
        """Cancel this cluster's jobs, then stop the daemons this harness started, by pid, in reverse
        order; SIGKILL what stays."""
        if self.procs.get("slurmd") and self.procs["slurmd"].poll() is None:
            self._run("scancel", "--quiet", "--full", "--partition", "debug")
            end = time.monotonic() + timeout
            while time.monotonic() < end and self._run("squeue", "-h").stdout.strip():
                time.sleep(0.5)
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(timeout)
                except subprocess.TimeoutExpired:
                    os.kill(p.pid, signal.SIGKILL)
                    p.wait(timeout)
        self.procs.clear()
        if getattr(self, "linked", False) and SYSTEM_CONF.is_symlink() and SYSTEM_CONF.resolve() == self.conf:
            SYSTEM_CONF.unlink()
        self.linked = False
        shutil.rmtree(self.munge_dir, ignore_errors=True)

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    why = unavailable()
    if why:
        sys.exit(f"no Slurm: {why}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # stop the daemons on SIGTERM too
    with SlurmCluster(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/diffsec-slurm")) as c:
        print(f"export SLURM_CONF={c.conf}   # daemons: {({n: p.pid for n, p in c.procs.items()})}", flush=True)
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
