"""A throwaway single-node SLURM cluster on 127.0.0.1, for proving `profiles/slurm` for real.

    python tests/slurm/cluster.py install            # apt-get the Debian packages if missing
    python tests/slurm/cluster.py run DIR -- CMD...  # start a cluster in DIR, run CMD, stop it

The daemons (munged, mariadbd, slurmdbd, slurmctld, slurmd) run from a scratch folder as root,
listen on 127.0.0.1 on free ports, and are stopped by their PID when the `with` block or the
command ends, also on failure or SIGTERM; a set-up failure is one line naming what failed and its
log. A run killed outright (SIGKILL) leaves its daemons and /etc links behind: the next start stops
those daemons by the PIDs that run recorded and removes its links. The node offers 2 CPUs and one
fake GPU (gres on /dev/null): a job asking for `--gpus=1` is scheduled one at a time and sees
CUDA_VISIBLE_DEVICES=0, nothing more.
Accounting runs through slurmdbd and MariaDB so that `sacct` shows the finished jobs.

The SLURM executor plugin clears SLURM_* variables (SLURM_CONF included) before the `srun` inside
each job, so the configuration must also sit at the default path: /etc/slurm/slurm.conf and
gres.conf are symlinked to the scratch files for the cluster's lifetime (refused if a real
configuration is there).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

DEBIAN_PACKAGES = ["slurm-wlm", "slurmdbd", "munge", "mariadb-server"]
REQUIRED_COMMANDS = ["munged", "mungekey", "mariadbd", "mariadb-install-db", "mariadb",
                     "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct", "sinfo"]
ETC_SLURM = Path("/etc/slurm")
PARTITION = "gpu"  # the partition profiles/slurm names
CPUS = 2
REAL_MEMORY_MB = 20000  # above the profile's default mem_mb (16000)
STARTUP_TIMEOUT_S = 90
# The first line of every slurm.conf written here: tells a stale link from a killed run apart from a
# real configuration.
CONF_MARKER = "# throwaway test cluster of tests/slurm/cluster.py"
DAEMON_PIDS = "run/daemons.pids"  # "PID NAME" per line, for stopping the daemons of a killed run


class ClusterError(RuntimeError):
    pass


def missing_commands() -> list[str]:
    return [c for c in REQUIRED_COMMANDS if shutil.which(c) is None]


def install() -> None:
    """Install the Debian packages when a command is missing (root, apt-get; about 30 s)."""
    if not missing_commands():
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ClusterError(
            f"missing {', '.join(missing_commands())}: install {' '.join(DEBIAN_PACKAGES)} "
            "(Debian/Ubuntu, as root: apt-get install -y ...)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_step(["apt-get", "update", "-qq"], env=env)
    run_step(["apt-get", "install", "-y", "-qq", *DEBIAN_PACKAGES], env=env)


def run_step(cmd: list[str], **kwargs) -> None:
    """Run one set-up command; its failure is a ClusterError naming the command and its last output line."""
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=600, **kwargs)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ClusterError(f"`{' '.join(cmd[:2])}` failed: {error}") from None
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise ClusterError(f"`{' '.join(cmd[:2])}` exited with {proc.returncode}: {last}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SlurmCluster:
    """Start with `with SlurmCluster(scratch) as cluster:`; `cluster.env` reaches it."""

    def __init__(self, scratch: Path):
        self.dir = Path(scratch).resolve()
        self.node = socket.gethostname().split(".")[0]
        self.cluster_name = "detdistill"
        self.ports = {name: free_port() for name in ("mysql", "dbd", "ctld", "slurmd")}
        self.munge_socket = self.dir / "munge" / "munge.socket.2"
        self.mysql_socket = self.dir / "mysql" / "mysqld.sock"
        self.conf = self.dir / "etc" / "slurm.conf"
        self.daemons: list[tuple[str, subprocess.Popen]] = []
        self.etc_links: list[Path] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    # -- lifecycle -------------------------------------------------------------------------

    def __enter__(self):
        # SIGTERM (a CI timeout, `kill`) would end Python without running __exit__: make it an
        # exception so the daemons stop and the /etc links go.
        self._previous_sigterm = None
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)

    def start(self) -> None:
        if os.geteuid() != 0:
            raise ClusterError("the test cluster runs its daemons as root (SlurmUser=root): run as root")
        if missing := missing_commands():
            raise ClusterError(f"missing {', '.join(missing)}: as root on Debian/Ubuntu, run "
                               "`.venv/bin/python tests/slurm/cluster.py install`")
        for sub in ("munge", "mysql", "etc", "log", "spool/ctld", "spool/d", "run"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir / "munge", 0o700)
        self._write_configs()
        try:
            self._link_etc()
        except OSError as error:
            raise ClusterError(f"cannot link the configuration into {ETC_SLURM}: {error}") from None
        self._start_munge()
        self._start_mariadb()
        self._start("slurmdbd", ["slurmdbd", "-D"], ready=self._dbd_ready)
        self._start("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)],
                    ready=lambda: self._ok(["scontrol", "ping"], "UP"))
        self._start("slurmd", ["slurmd", "-D", "-N", self.node, "-f", str(self.conf)],
                    ready=lambda: self._ok(["sinfo", "-h", "-N", "-o", "%t"], "idle"))

    def stop(self) -> None:
        """Cancel leftover jobs, stop the daemons (newest first) by PID, remove the /etc links.

        Each step runs even if an earlier one fails, so nothing is left for the next run."""
        try:
            if any(name == "slurmctld" and proc.poll() is None for name, proc in self.daemons):
                self._cancel_jobs()
        finally:
            try:
                for _, proc in reversed(self.daemons):
                    _end(proc.pid, wait=proc.wait)
                self.daemons.clear()
            finally:
                for link in self.etc_links:
                    if link.is_symlink():
                        link.unlink()
                self.etc_links.clear()

    def _cancel_jobs(self) -> None:
        """scancel every job and wait (up to 30 s) until none is left, so no slurmstepd outlives slurmd."""
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            subprocess.run(["scancel", "--user", "root"], check=False, env=self.env, capture_output=True, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                queue = subprocess.run(["squeue", "-h", "-o", "%i"], check=False, env=self.env,
                                       capture_output=True, text=True, timeout=30)
                if queue.returncode != 0 or not queue.stdout.strip():
                    return
                time.sleep(1)

    # -- queries ---------------------------------------------------------------------------

    def run(self, *args: str) -> str:
        return subprocess.run(list(args), env=self.env, capture_output=True, text=True, check=True,
                              timeout=60).stdout

    def sacct(self, fields: str) -> list[dict[str, str]]:
        """Every job allocation accounted so far (no steps), one dict per job."""
        names = fields.split(",")
        out = self.run("sacct", "--allusers", "--noheader", "--parsable2", "--allocations",
                       "--starttime", "2000-01-01", f"--format={fields}")
        return [dict(zip(names, line.split("|"))) for line in out.splitlines() if line]

    # -- internals -------------------------------------------------------------------------

    def _write_configs(self) -> None:
        d, p = self.dir, self.ports
        auth = f"socket={self.munge_socket}"
        self.conf.write_text(f"""\
{CONF_MARKER}
ClusterName={self.cluster_name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={p['ctld']}
SlurmdPort={p['slurmd']}
SlurmUser=root
AuthType=auth/munge
AuthInfo={auth}
StateSaveLocation={d}/spool/ctld
SlurmdSpoolDir={d}/spool/d
SlurmctldPidFile={d}/run/slurmctld.pid
SlurmdPidFile={d}/run/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
SchedulerParameters=sched_interval=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={p['dbd']}
AccountingStoragePass={self.munge_socket}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory={REAL_MEMORY_MB} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
""")
        (self.conf.parent / "gres.conf").write_text(
            f"AutoDetect=off\nNodeName={self.node} Name=gpu File=/dev/null\n")
        dbd = self.conf.parent / "slurmdbd.conf"
        dbd.write_text(f"""\
AuthType=auth/munge
AuthInfo={auth}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={p['dbd']}
SlurmUser=root
PidFile={d}/run/slurmdbd.pid
LogFile={d}/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={p['mysql']}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        os.chmod(dbd, 0o600)  # slurmdbd refuses a readable password file

    def _link_etc(self) -> None:
        ETC_SLURM.mkdir(parents=True, exist_ok=True)
        _clear_killed_run()
        for name in ("slurm.conf", "gres.conf"):
            link = ETC_SLURM / name
            if link.exists() or link.is_symlink():
                raise ClusterError(
                    f"{link} exists: this test cluster would replace a real SLURM configuration; "
                    "run it on a machine without one"
                )
            link.symlink_to(self.conf.parent / name)
            self.etc_links.append(link)

    def _start_munge(self) -> None:
        m = self.dir / "munge"
        key = m / "munge.key"
        run_step(["mungekey", "--create", f"--keyfile={key}", "--force"])
        self._start("munged", ["munged", "--foreground", "--force", f"--socket={self.munge_socket}",
                               f"--key-file={key}", f"--pid-file={m}/munged.pid",
                               f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed"],
                    ready=self._munge_ready)

    def _munge_ready(self) -> bool:
        cred = subprocess.run(["munge", "-n", "-S", str(self.munge_socket)], check=False, capture_output=True,
                              timeout=30)
        return cred.returncode == 0 and subprocess.run(
            ["unmunge", "-S", str(self.munge_socket)], input=cred.stdout, check=False, capture_output=True,
            timeout=30,
        ).returncode == 0

    def _start_mariadb(self) -> None:
        data = self.dir / "mysql" / "data"
        run_step(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                  "--auth-root-authentication-method=normal", "--skip-test-db"])
        self._start("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=root",
                                 f"--socket={self.mysql_socket}", f"--port={self.ports['mysql']}",
                                 "--bind-address=127.0.0.1", f"--pid-file={self.dir}/run/mariadbd.pid",
                                 "--skip-log-bin", "--innodb-buffer-pool-size=32M"],
                    ready=lambda: self._sql("SELECT 1"))
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';"
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        if not self._sql(sql):
            raise ClusterError(f"could not create the slurm database user (socket {self.mysql_socket})")

    def _sql(self, statement: str) -> bool:
        try:
            return subprocess.run(["mariadb", "--no-defaults", "-S", str(self.mysql_socket), "-u", "root",
                                   "-e", statement], check=False, capture_output=True, timeout=30).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _dbd_ready(self) -> bool:
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex(("127.0.0.1", self.ports["dbd"])) == 0

    def _ok(self, cmd: list[str], expect: str) -> bool:
        proc = subprocess.run(cmd, check=False, env=self.env, capture_output=True, text=True, timeout=30)
        return proc.returncode == 0 and expect in proc.stdout

    def _start(self, name: str, cmd: list[str], ready) -> None:
        try:
            with open(self.dir / "log" / f"{name}.out", "wb") as log:
                proc = subprocess.Popen(cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        except OSError as error:
            raise ClusterError(f"{name} could not be started: {error}") from None
        self.daemons.append((name, proc))
        with open(self.dir / DAEMON_PIDS, "a") as pids:
            pids.write(f"{proc.pid} {name}\n")
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._probe(ready):
            if proc.poll() is not None or time.monotonic() > deadline:
                how = f"exited with {proc.returncode}" if proc.poll() is not None else f"not ready in {STARTUP_TIMEOUT_S} s"
                # the line says what failed; the log's tail (on stderr) says why
                print(self._tail(name), file=sys.stderr)
                raise ClusterError(f"{name} did not come up ({how}); its log: {self.dir / 'log'}/{name}.*")
            time.sleep(0.5)

    @staticmethod
    def _probe(ready) -> bool:
        try:
            return ready()
        except subprocess.TimeoutExpired:
            return False

    def _tail(self, name: str) -> str:
        texts = []
        for path in (self.dir / "log").glob(f"{name}*"):
            texts.append(f"--- {path}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-30:]))
        return "\n".join(texts)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _end(pid: int, wait=None) -> None:
    """SIGTERM, then SIGKILL after 20 s; `wait` reaps a child of this process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 20
    while _alive(pid, wait) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid, wait):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if wait is not None:
            wait()


def _alive(pid: int, wait=None) -> bool:
    if wait is not None:
        try:
            wait(timeout=0)
            return False
        except subprocess.TimeoutExpired:
            return True
    try:
        # field 3 of /proc/PID/stat is the state; a zombie (Z) has ended, its parent just has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _clear_killed_run() -> None:
    """Stop the daemons and remove the /etc links that a killed run of this module left behind.

    Only links to a configuration this module wrote count, and only processes started with that
    configuration (SLURM_CONF in their environment) are stopped."""
    for name in ("slurm.conf", "gres.conf"):
        link = ETC_SLURM / name
        if not link.is_symlink():
            continue
        conf = Path(os.readlink(link)).parent / "slurm.conf"
        try:
            ours = conf.read_text().startswith(CONF_MARKER)
        except OSError:
            ours = not conf.exists()  # a dangling link configures nothing
        if not ours:
            continue
        scratch = conf.parent.parent
        with contextlib.suppress(OSError):
            for line in (scratch / DAEMON_PIDS).read_text().splitlines()[::-1]:
                pid = int(line.split()[0])
                with contextlib.suppress(OSError):
                    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                    if f"SLURM_CONF={conf}".encode() in environ:
                        print(f"cluster.py: stopping {line.split()[1]} (PID {pid}) of a killed run in {scratch}",
                              file=sys.stderr)
                        _end(pid)
        link.unlink()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("install", help="apt-get the Debian packages if a command is missing")
    run = sub.add_parser("run", help="start a cluster in DIR, run COMMAND with SLURM_CONF set, stop it")
    run.add_argument("dir", type=Path)
    run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.action == "install":
            install()
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        with SlurmCluster(args.dir) as cluster:
            return subprocess.run(command or ["sinfo"], check=False, env=cluster.env).returncode
    except ClusterError as error:
        print(f"cluster.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as error:
        print(f"cluster.py: interrupted ({error or 'Ctrl-C'}); the cluster was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
