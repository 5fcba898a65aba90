"""The node's model: the engine that serves, the one a parameter change is building, and their config.

:class:`ModelSlot` builds a :class:`~esnet_ros.inference.segmenter.Segmenter` for a lifecycle
transition (:meth:`ModelSlot.load`) or, after ``ros2 param set weights ...``, in a background thread
(:meth:`ModelSlot.reload`) so that the old engine keeps serving until the worker swaps the new one in
before its next frame (:meth:`ModelSlot.swap`). A newer change supersedes an older one still loading;
a failed reload logs why, keeps the old engine and sets the parameters back.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from esnet_ros.core.checkpoint import is_synthetic_only
from esnet_ros.core.labels import LabelSet
from esnet_ros.inference.segmenter import Segmenter
from esnet_ros.ros.parameters import ModelConfig, check_model_config, ros_syntax

__all__ = ["MODEL_ERRORS", "ModelSlot"]

#: what a bad model configuration raises (a bad file, a bad device, a missing library)
MODEL_ERRORS = (ValueError, TypeError, FileNotFoundError, RuntimeError)


class ModelSlot:
    """``serving``: the engine frames run on; ``pending``: a reloaded engine waiting to be swapped in.

    Args:
        logger: the node's logger.
        set_back: called with ``{name: old value}`` when a reload fails, to undo the parameter change.
    """

    def __init__(self, logger: Any, set_back: Callable[[dict[str, Any]], None]) -> None:
        self._logger = logger
        self._set_back = set_back
        self.serving: Segmenter | None = None
        self.pending: Segmenter | None = None
        self.cfg: ModelConfig | None = None
        self.last_error = ""
        self._lock = threading.Lock()
        self._generation = 0

    def load(self, cfg: ModelConfig, transition: str) -> bool:
        """Build ``cfg``'s engine now (configure, activate); False with the error logged and kept."""
        try:
            preloaded, labels = check_model_config(cfg)
            seg = self._build(cfg, preloaded, labels)
        except MODEL_ERRORS as exc:
            self.last_error = f"{transition} failed: {ros_syntax(exc)}"
            self._logger.error(self.last_error)
            return False
        self.serving, self.cfg, self.last_error = seg, cfg, ""
        return True

    def reload(
        self,
        cfg: ModelConfig,
        preloaded: Any,
        labels: LabelSet | None,
        previous: dict[str, Any],
        active: Callable[[], bool],
    ) -> None:
        """Build ``cfg``'s engine in the background (``preloaded``: the checked weights); while ``active()``
        it waits in :attr:`pending` for the worker, else it serves at once."""
        self._generation += 1
        args = (cfg, preloaded, labels, previous, active, self._generation)
        threading.Thread(target=self._reload, args=args, name="esnet_reload", daemon=True).start()

    def swap(self) -> bool:
        """Worker thread, between frames: the pending engine takes over (the old one is released)."""
        if self.pending is None:
            return False
        old, self.serving, self.pending = self.serving, self.pending, None
        if old is not None:
            old.release()
        return True

    def release(self) -> None:
        """Free the serving engine (GPU memory); :meth:`load` with :attr:`cfg` rebuilds it."""
        if self.serving is not None:
            self.serving.release()
            self.serving = None

    def clear(self, forget_config: bool = True) -> None:
        self.serving = self.pending = None
        if forget_config:
            self.cfg = None

    def _reload(
        self,
        cfg: ModelConfig,
        preloaded: Any,
        labels: LabelSet | None,
        previous: dict[str, Any],
        active: Callable[[], bool],
        generation: int,
    ) -> None:
        with self._lock:
            if generation != self._generation:
                return  # a newer change supersedes this one
            try:
                seg = self._build(cfg, preloaded, labels)
            except MODEL_ERRORS as exc:
                self._logger.error(f"reloading the model failed, the old model keeps serving: {ros_syntax(exc)}")
                self._set_back(previous)
                return
            self.cfg = cfg
            if active():
                self.pending = seg
            else:
                self.serving = seg

    def _build(self, cfg: ModelConfig, preloaded: Any, labels: LabelSet | None) -> Segmenter:
        seg = Segmenter(
            preloaded,
            device=cfg.device,
            precision=cfg.precision,
            backend=cfg.backend,
            num_threads=cfg.num_threads,
            input_size=cfg.input_size,
            labels=labels,
            backend_options=cfg.backend_options(),
        )
        if is_synthetic_only(seg.meta):
            self._logger.warning(
                f"serving {cfg.weights_path().name}, trained on synthetic scenes only: it is NOT for real cameras "
                f"(weights:=camvid is the bundled real-street model, or weights:=/path/to/model.safetensors)"
            )
        source = "from the checkpoint" if cfg.input_size is None else "from parameters input_width/input_height"
        width, height = seg.input_size
        self._logger.info(
            f"model {cfg.weights_path().name}: {seg.num_classes} classes ({seg.labels.name}), network input "
            f"{width}x{height} ({source}), {seg.backend.name} on {seg.device} ({seg.precision}); {seg.precision_reason}"
        )
        return seg
