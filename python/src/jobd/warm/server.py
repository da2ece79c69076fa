"""The server: hello, preload, then one poll() loop that forks a child per `run` and
reports each child's exit. Single-threaded throughout: it forks only from that state."""

from __future__ import annotations

import gc
import os
import select
import sys
from . import child, sigchld, stdio
from .channel import Channel, Packet, ProtocolError
from .children import Children
from .messages import VERSION, Run, parse_hello, parse_run, run_id_of
from .parent_death import ParentDeath
from .preload import PreloadError, describe, import_preload

# O_PATH opens a directory for fchdir() without needing read permission on it.
_DIR_FLAGS = getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY | os.O_CLOEXEC


def main() -> int:
    # The entry `python -m` put first in sys.path (the server's workdir), before the
    # preload may add its own; a child swaps it for its cold run's.
    path_entry = None if getattr(sys.flags, "safe_path", False) else sys.path[0]
    fd_text = os.environ.get("JOBD_RUNTIME_FD", "3")
    try:
        channel = Channel.from_fd(int(fd_text))
    except (ValueError, ProtocolError) as e:
        print(f"jobd.warm: JOBD_RUNTIME_FD={fd_text!r}: {e}", file=sys.stderr)
        return 2
    try:
        packet = channel.receive()
        if packet is None:
            print("jobd.warm: fd 3 reached end of file before hello", file=sys.stderr)
            return 1
        hello = parse_hello(packet)
    except ProtocolError as e:
        channel.send({"op": "failed", "error": f"jobd.warm: {e}"})
        return 1
    env_before = dict(os.environ)
    try:
        import_preload(hello.preload)
        parent_death = ParentDeath()
    except PreloadError as e:
        channel.send({"op": "failed", "error": str(e)})
        return 1
    except OSError as e:
        channel.send({"op": "failed", "error": describe("jobd.warm", e)})
        return 1
    # Variables the preload set (Django sets TZ from settings.TIME_ZONE): a cold run's
    # imports set them too, so every child gets them over the run's env.
    preload_env = {k: v for k, v in os.environ.items() if env_before.get(k) != v}
    inherited = child.Inherited(os.getpid(), parent_death, preload_env, path_entry)
    # What the preload built is never collected by a child's garbage collector, which
    # would otherwise write into every object's header and copy all the server's pages.
    gc.freeze()
    stdio.flush()
    channel.send({"op": "ready", "version": VERSION, "pid": os.getpid()})
    return Server(channel, inherited).serve()


class Server:
    def __init__(self, channel: Channel, inherited: child.Inherited) -> None:
        self.channel = channel
        self.inherited = inherited
        self.children = Children()
        self.accepting = True  # until quit, or end of file on fd 3
        self.listening = True  # until end of file: a run after quit gets its spawn_error

    def serve(self) -> int:
        wakeup = sigchld.install()
        poller = select.poll()
        poller.register(wakeup, select.POLLIN)
        poller.register(self.channel.fileno(), select.POLLIN)
        while (self.accepting and self.channel.connected) or self.children:
            for fd, _ in poller.poll():
                if fd == wakeup:
                    sigchld.drain(wakeup)
                    for exited in self.children.reap():
                        self.channel.send(exited)
                elif self.listening:
                    self.on_readable()
                    if not self.listening:
                        poller.unregister(self.channel.fileno())
        return 0

    def on_readable(self) -> None:
        try:
            packet = self.channel.receive()
        except ProtocolError as e:
            print(f"jobd.warm: ignored {e}", file=sys.stderr)
            return
        if packet is None:
            self.listening = self.accepting = False
            return
        op = packet.message.get("op")
        if op == "run":
            self.start(packet)
        elif op == "quit":
            self.accepting = False
            packet.close_fds()
        else:
            packet.close_fds()
            print(f"jobd.warm: ignored a message with op {op!r}", file=sys.stderr)

    def start(self, packet: Packet) -> None:
        try:
            try:
                run = parse_run(packet)
            except ProtocolError as e:
                self.spawn_error(run_id_of(packet.message), str(e))
                return
            if not self.accepting:
                self.spawn_error(run.run_id, "the server is quitting: it takes no more runs")
                return
            try:
                cwd_fd = os.open(run.cwd, _DIR_FLAGS)
            except OSError as e:
                self.spawn_error(run.run_id, f"cwd {run.cwd}: {e.strerror}")
                return
            try:
                self.fork(run, cwd_fd)
            finally:
                os.close(cwd_fd)
        finally:
            # The child has its copies; the server's would keep the run's pipes open
            # after the run ended, and jobd would never see end of file on them.
            packet.close_fds()

    def fork(self, run: Run, cwd_fd: int) -> None:
        stdio.flush()
        try:
            pid = os.fork()
        except OSError as e:
            self.spawn_error(run.run_id, f"fork: {e.strerror}")
            return
        if pid == 0:
            child.main(run, cwd_fd, self.inherited)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child already did it (EACCES) or has already died (ESRCH)
        self.children.add(pid, run.run_id)
        self.channel.send({"op": "started", "run_id": run.run_id, "pid": pid})

    def spawn_error(self, run_id: str, error: str) -> None:
        self.channel.send({"op": "spawn_error", "run_id": run_id, "error": error})
