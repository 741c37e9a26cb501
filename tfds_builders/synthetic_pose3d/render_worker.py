"""Photo-rendering worker of ``synthetic_pose3d`` (a child process speaking pickles on pipes).

Why a separate process: in this environment TensorFlow and Mesa's OSMesa (pyrender) crash
when loaded into one process, so the building process (which ``tfds.load`` may later use
for tf.data) never loads OpenGL; and the worker renders while the builder rasterizes the
ground truth, which uses both CPU cores.

Protocol (``python -m tfds_builders.synthetic_pose3d.render_worker``): the first pickle on
stdin is the class fields (:func:`.classes.make_classes`); then each request
``(label, pose (7,), (H, W), rng_state)`` is answered, in order, on the original stdout by
``("ok", jpeg_bytes)`` or ``("error", message)``. Anything else the worker prints goes to
stderr. EOF on stdin ends it.
"""

from __future__ import annotations

import collections
import os
import pathlib
import pickle
import subprocess
import sys

_PACKAGE_ROOT = pathlib.Path(__file__).resolve().parents[2]  # the directory holding tfds_builders/


class RenderWorker:
    """Client of one worker process; :meth:`submit` returns a handle whose ``result()``
    blocks for that photo (requests are answered in order)."""

    def __init__(self, fields: dict):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tfds_builders.synthetic_pose3d.render_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self._sent = 0
        self._received = 0
        self._results: dict[int, tuple[str, object]] = {}
        self._send(fields)

    def _send(self, obj) -> None:
        pickle.dump(obj, self._proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        self._proc.stdin.flush()

    def submit(self, label, pose, hw, rng_state) -> "_Handle":
        self._send((int(label), pose, tuple(int(x) for x in hw), rng_state))
        self._sent += 1
        return _Handle(self, self._sent - 1)

    def _result(self, seq: int) -> bytes:
        while self._received <= seq:
            try:
                self._results[self._received] = pickle.load(self._proc.stdout)
            except EOFError:
                raise BrokenPipeError(f"the render worker exited (code {self._proc.poll()})") from None
            self._received += 1
        status, value = self._results.pop(seq)
        if status != "ok":
            raise RuntimeError(f"render worker: {value}")
        return value

    def close(self) -> None:
        """Ends the worker (killed at once if it still owes answers nobody will read)."""
        if self._proc.poll() is None:
            try:
                if self._received < self._sent:
                    raise TimeoutError
                self._proc.stdin.close()
                self._proc.wait(timeout=30)
            except Exception:  # noqa: BLE001
                self._proc.kill()
                self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            try:
                stream.close()
            except Exception:  # noqa: BLE001
                pass


class _Handle:
    def __init__(self, worker: RenderWorker, seq: int):
        self._worker, self._seq = worker, seq

    def result(self) -> bytes:
        return self._worker._result(self._seq)


class InProcessRenderer:
    """Same interface, rendering in the calling process (fallback / opt-in)."""

    def __init__(self, classes):
        self._classes = classes
        self._queue: collections.deque = collections.deque()

    def submit(self, label, pose, hw, rng_state):
        from tfds_builders.synthetic_pose3d.classes import render_jpeg  # noqa: PLC0415

        classes = self._classes

        class _Now:
            def result(self_inner):
                return render_jpeg(classes, label, pose, hw, rng_state)

        return _Now()

    def close(self) -> None:
        pass


def main() -> None:
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints go to stderr, never into the protocol
    inp = sys.stdin.buffer
    from tfds_builders.synthetic_pose3d.classes import make_classes, render_jpeg  # noqa: PLC0415

    classes = make_classes(pickle.load(inp))
    while True:
        try:
            label, pose, hw, rng_state = pickle.load(inp)
        except EOFError:
            break
        try:
            reply = ("ok", render_jpeg(classes, label, pose, hw, rng_state))
        except Exception as exc:  # noqa: BLE001 - reported to the builder, which skips the example
            reply = ("error", f"{type(exc).__name__}: {exc}")
        pickle.dump(reply, out, protocol=pickle.HIGHEST_PROTOCOL)
        out.flush()


if __name__ == "__main__":
    main()
