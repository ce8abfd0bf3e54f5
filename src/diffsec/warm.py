"""Warm start: stage processes fork from one process that has torch, diffusers and transformers imported.

A `diffsec <stage>` process spends most of a small job importing libraries. Importing torch
takes ~1.5 s on the 2-core machine, diffusers' pipeline classes ~3 s more, and the work of a
smoke-profile job ~1 s. A local Snakemake run therefore starts one server (`diffsec-warm`, from
the Snakefile's `onstart`), and every `diffsec` call of that run asks it to fork. The server
holds only third-party libraries. Nothing of diffsec beyond this module is imported before the
fork, so each stage runs the code on disk at that moment, as a cold process would.

Protocol (a Unix socket in a private 0700 directory; peers must have the server's uid):

    client -> server   one message: JSON {argv, cwd, env, python, package}, with the client's
                       stdin, stdout and stderr descriptors attached (SCM_RIGHTS)
    server             forks; the child takes those descriptors as 0/1/2, the cwd and the
                       environment, and runs `diffsec.cli.main.main(argv)`
    server -> client   one JSON line {"status": s} once the child ends: s >= 0 is its exit
                       code, s < 0 the signal -s that ended it (the client then ends by that
                       signal itself, so a SIGKILLed stage still reads as 137 to Snakemake)

If the client goes away first (Snakemake killed the job), the server SIGKILLs the child. The
client runs the stage in its own process, as before, when no server answers, when the server is
another interpreter or another checkout (`python`, `package`), or when a GPU may be used (CUDA
cannot be initialised in a forked child). Snakemake's benchmark files then see only the thin
client, so the stage writes its own peak RSS and CPU time into its manifest (`resources`).
"""

from __future__ import annotations

import array
import json
import os
import select
import signal
import socket
import sys
import time

ENV = "DIFFSEC_WARM"        # the socket's path; unset = no warm start
CHILD = "DIFFSEC_WARM_CHILD"  # set inside a forked stage (a stage never forwards again)
PRELOAD = ("torch", "numpy", "scipy.stats", "PIL.Image", "diffusers", "transformers",
           "diffusers:StableDiffusionPipeline", "diffusers:UNet2DModel", "diffusers:DDPMScheduler",
           "diffusers:DDIMScheduler", "diffusers:DPMSolverMultistepScheduler", "diffusers:AutoencoderKL",
           "transformers:CLIPTextModel", "transformers:CLIPTokenizer")
_FDS = 3


def _package() -> str:
    return os.path.dirname(os.path.abspath(__file__))


def _identity() -> dict[str, str]:
    """Who may fork from whom: the same environment (its prefix) and the same package files."""
    return {"python": sys.prefix, "package": _package()}


# ---- client -------------------------------------------------------------------------------

def forward(argv: list[str]) -> int | None:
    """Run `diffsec argv` in a child of the warm server and return its exit code; None when no
    server can take it (the caller then runs the stage itself). A stage ended by a signal ends
    this process by the same signal."""
    path = os.environ.get(ENV)
    if not path or os.environ.get(CHILD):
        return None
    try:
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn.connect(path)
    except OSError:
        return None
    with conn:
        msg = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), **_identity()}).encode()
        try:
            conn.sendmsg([len(msg).to_bytes(8, "big") + msg],
                         [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", range(_FDS)))])
        except OSError:   # e.g. a closed stdin: nothing was started, run cold
            return None
        try:
            reply = _read_line(conn)
        except OSError:
            reply = b""
    if not reply:
        print("diffsec: error: the warm-start server went away during the stage (rerun it)", file=sys.stderr)
        return 1
    answer = json.loads(reply)
    if answer.get("refused"):
        return None
    status = int(answer["status"])
    if status < 0:
        if -status not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(-status, signal.SIG_DFL)
        os.kill(os.getpid(), -status)
    return status


def _read_line(conn: socket.socket) -> bytes:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = conn.recv(4096)
        if not chunk:
            return b""
        buf += chunk
    return buf


# ---- server -------------------------------------------------------------------------------

def preload(names=PRELOAD) -> None:
    """Import the heavy libraries (and names from them); never runs a tensor operation, so no
    thread pool and no CUDA context exists when a child is forked."""
    import importlib

    for name in names:
        module, _, attr = name.partition(":")
        mod = importlib.import_module(module)
        if attr:
            getattr(mod, attr)


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    fds = array.array("i")
    head, anc, _, _ = conn.recvmsg(8, socket.CMSG_SPACE(_FDS * fds.itemsize))
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    size, body = int.from_bytes(head, "big"), b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise OSError("client closed mid-message")
        body += chunk
    return json.loads(body), list(fds)


def _child(request: dict, fds: list[int], listener: socket.socket, conn: socket.socket) -> None:
    """In the forked child: become the client's stage process, run it, never return."""
    code = 1
    try:
        listener.close()
        conn.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[CHILD] = "1"
        import tempfile

        tempfile.tempdir = None   # TMPDIR is the job's, not the server's
        sys.argv = ["diffsec", *request["argv"]]
        from diffsec.cli.main import main

        code = main(request["argv"])
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if isinstance(e.code, str):
            print(e.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a bug in a stage: its traceback, then rc 1, as a cold run
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - the client's descriptor may be gone already
                pass
        os._exit(code)


def serve(path: str, watch_pid: int = 0, idle_exit: float = 3600.0) -> None:
    """Accept stage requests on `path` until `watch_pid` (the Snakemake process) is gone, or
    nothing ran for `idle_exit` seconds."""
    preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    running: dict[int, socket.socket] = {}   # child pid -> its client's connection
    try:
        _loop(listener, running, watch_pid, idle_exit)
    finally:
        for pid, conn in running.items():
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            conn.close()
        listener.close()


def _loop(listener: socket.socket, running: dict[int, socket.socket], watch_pid: int, idle_exit: float) -> None:
    last = time.monotonic()
    while True:
        for pid, conn in list(running.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
                _reply(conn, {"status": code})
                del running[pid]
                last = time.monotonic()
        if watch_pid and not _alive(watch_pid) or not running and time.monotonic() - last > idle_exit:
            return
        readable, _, _ = select.select([listener, *running.values()], [], [], 0.05)
        for sock in readable:
            if sock is listener:
                _accept(listener, running)
            else:   # a client's connection readable before its reply: the client is gone
                pid = next(p for p, c in running.items() if c is sock)
                os.kill(pid, signal.SIGKILL)


def _accept(listener: socket.socket, running: dict[int, socket.socket]) -> None:
    conn, _ = listener.accept()
    fds: list[int] = []
    try:
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12)
        request, fds = _receive(conn)
        if (int.from_bytes(creds[8:12], sys.byteorder) != os.getuid() or len(fds) != _FDS
                or {k: request.get(k) for k in ("python", "package")} != _identity()):
            raise PermissionError("not this interpreter, checkout or user")
    except (OSError, ValueError, KeyError):
        _reply(conn, {"refused": True})
        for fd in fds:
            os.close(fd)
        return
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        _child(request, fds, listener, conn)
    for fd in fds:
        os.close(fd)
    running[pid] = conn


def _reply(conn: socket.socket, answer: dict) -> None:
    try:
        conn.sendall(json.dumps(answer).encode() + b"\n")
    except OSError:
        pass
    conn.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # alive, another user's
        pass
    return True


# ---- lifecycle (the Snakefile's onstart / onsuccess / onerror) -----------------------------

def start(watch_pid: int, timeout: float = 60.0) -> str | None:
    """Start a server for this run in the background; its socket path once it listens (None if
    it did not come up in `timeout` seconds: the run then starts stages cold)."""
    import subprocess
    import tempfile

    path = os.path.join(tempfile.mkdtemp(prefix="diffsec-warm-"), "socket")  # mkdtemp: mode 0700
    subprocess.Popen([sys.executable, "-m", "diffsec.warm", path, str(watch_pid)], stdin=subprocess.DEVNULL,
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            return path
        time.sleep(0.1)
    return None


def stop(path: str | None) -> None:
    """Stop the server of `path` (its pid file lies beside the socket) and remove its directory; a
    server that is already gone is no error (onsuccess must not fail a finished run)."""
    import contextlib
    import shutil

    if not path or not os.path.exists(path):
        return
    pid = _listener_pid(path)
    if pid:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)

    shutil.rmtree(os.path.dirname(path), ignore_errors=True)


def _listener_pid(path: str) -> int:
    try:
        with open(path + ".pid") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


if __name__ == "__main__":
    sock, watch = sys.argv[1], int(sys.argv[2])
    with open(sock + ".pid", "w") as f:
        f.write(str(os.getpid()))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    serve(sock, watch)
