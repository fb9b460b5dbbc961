"""StreamGroup: several camera streams, one model, one fast thread, one slow thread.

Each stream is a full ``StreamEngine`` (its own main context and KV budget, rate gate, keyframe
history, questions, trigger scheduler, frame queue and stats); the group shares the model
between them and replaces their threads:

- one fast thread: each round takes the oldest waiting frame of every stream that has one
  (streams round-robin, at most one frame per stream per round, so a stream that floods its
  queue cannot take another's turn: its own queue drops its own oldest frames). The frames of a
  round are routed by each stream's rate gate, then their vision towers run as ONE batch (the
  general tower over the decided frames, the egocentric tower over the decided and ego-only
  frames; on a GPU from CUDA graphs per bucket, ``batched_towers.py``), then the round's decided frames take ONE batched LLM step (``batched_step.py``: each
  stream's main context is a row of one KV pool, with its own length, positions and KV budget;
  padded to a bucket of 1, 2, 4, 8 or 16 rows; CUDA graphs per bucket). A frame whose token piece
  is not the plain frame (a stream's first, the first after an answer) feeds alone on its row;
- one slow thread: jobs of all streams wait in one queue served round-robin by stream; a stream
  has at most one job there (its scheduler runs one answer at a time and bounds what waits), so
  a busy stream cannot starve the others, and the fast thread never waits for it.

Without ``start`` each stream is an ordinary synchronous engine (``process_frame``), and
``process_round`` decides one round of frames (one per stream) with the batched towers and LLM
step: what the bench and the tests use; ``process_rounds`` pipelines a sequence of rounds (the next
rounds' towers on the GPU while a round's LLM step runs). A stream's decisions in a group equal what it
decides alone. The streams of a group must agree on ``weights`` and ``attention`` (one decoder).
The group drives each engine through its public interface (``accept_frame``, ``route``,
``begin_frame``/``end_frame``, ``plain_frame_state``, ``attach``, ``set_driver``, ...). The doorbell queue
and the fair slow pool the threads use are in ``group_threads.py``.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from .backends import DynamicBackend, StaticBackend, pick_backend, static_backend_supported, tower_attention_kind
from .batched_step import BatchedFrameStep, KVPool, PooledBackend, pool_capacity
from .batched_towers import GraphedTowerBatch
from .config import EngineConfig, EngineConfigError
from .engine import QUEUE_POLL_S, STOP_TIMEOUT_S, StreamEngine
from .fast_thinker import PendingFrame
from .frame_queue import QueuedFrame
from .group_threads import FairSlowPool, GroupQueue, SharedSlot
from .quantization import fp8_problem
from .rates import EGO, GENERAL, SKIP
from .static_decoder import FusedDecoder
from .types import Decision

LOOKAHEAD_ROUNDS = 8  # rounds ``process_rounds`` reads ahead at most to find the next one with a decided frame


class StreamGroup:
    def __init__(self, model, configs: dict[str, EngineConfig], *, slow_thinkers: dict | None = None,
                 batch_towers: bool = True, batch_llm: bool = True):
        """``configs``: stream id -> its engine config (ids in the order streams are served).

        ``slow_thinkers``: stream id -> a ``SlowThinker`` (e.g. remote); missing: local, on the shared model.
        ``batch_towers=False`` runs each frame's towers alone, ``batch_llm=False`` each LLM step alone (the
        bench's baselines). The LLM step is batched when the model runs on the static backend's math
        (``static_backend_supported``; CPU too, without graphs) and no stream asks for ``backend: dynamic``."""
        if not configs:
            raise ValueError("a StreamGroup needs at least one stream")
        self.model = model.eval()
        self.batch_towers = batch_towers
        self.doorbell = threading.Event()
        self.slow = FairSlowPool()
        self.streams: dict[str, StreamEngine] = {}
        cfgs = {sid: (cfg or EngineConfig()).validate().for_model(model) for sid, cfg in configs.items()}
        self.batched: BatchedFrameStep | None = None
        self._rows: dict[str, int] = {}  # stream id -> its KV pool row (batched LLM step)
        backends = self._pooled_backends(model, cfgs) if batch_llm else None
        shared = None  # the dynamic backend, or the static backends' fused decoder (one copy of its weights)
        for stream_id, cfg in cfgs.items():
            if backends is not None:
                backend = backends[stream_id]
            else:
                backend = self._backend(model, cfg, shared)
                shared = backend if isinstance(backend, DynamicBackend) else getattr(backend, "fused", shared)
            engine = StreamEngine(model, cfg, (slow_thinkers or {}).get(stream_id), backend=backend)
            queue = GroupQueue(engine.cfg.frame_queue_size, self.doorbell)
            worker = SharedSlot(engine.worker, self.slow, stream_id)
            worker.on_done = queue.wake
            engine.attach(queue, worker)
            self.streams[stream_id] = engine
        # On a GPU the batched towers run from CUDA graphs per batch size (resize and normalization there too).
        tower_attention = "triton" if all(tower_attention_kind(cfg) == "triton" for cfg in cfgs.values()) else "sdpa"
        self._graphed = {} if model.device.type != "cuda" or not batch_towers else {
            source: GraphedTowerBatch(encoder, model.device, len(cfgs), all(cfg.compile for cfg in cfgs.values()),
                                      tower_attention)
            for source, encoder in (("general", model.vision), ("ego", model.ego)) if encoder is not None}
        self.rounds = 0
        self.batched_frames = 0
        self.llm_batches = 0  # batched LLM steps run
        self.llm_batched_frames = 0  # frames decided in them
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _pooled_backends(self, model, cfgs: dict[str, EngineConfig]) -> dict | None:
        """One KV pool for every stream's main context and the batched step over it; None where not possible."""
        if static_backend_supported(model) is not None or any(cfg.backend == "dynamic" for cfg in cfgs.values()):
            return None
        first = next(iter(cfgs.values()))
        for key in ("weights", "fp8_head", "attention", "linear_kernel", "fold_norms"):  # one decoder serves every stream
            values = {getattr(cfg, key) for cfg in cfgs.values()}
            if len(values) > 1:
                raise EngineConfigError(f"the streams of one group share one decoder: {key} must agree, "
                                        f"got {sorted(values)}")
        if first.weights == "fp8" and fp8_problem(model.device) is not None:
            raise EngineConfigError(f"weights='fp8' is not possible here: {fp8_problem(model.device)}")
        use_graphs = model.device.type == "cuda"
        fused = FusedDecoder(model.llm, compile=first.compile and use_graphs, attention=first.attention,
                             dropping=model.token_dropping, weights=first.weights,
                             linear_kernel=first.linear_kernel, fold_norms=first.fold_norms, fp8_head=first.fp8_head)
        pool = KVPool(fused, len(cfgs), pool_capacity(model, list(cfgs.values())), model.device, model.dtype)
        backends = {}
        for row, (sid, cfg) in enumerate(cfgs.items()):
            backends[sid] = PooledBackend(model, cfg, fused, pool, row, use_graphs)
            self._rows[sid] = row
        self.batched = BatchedFrameStep(model, fused, pool, use_graphs, len(cfgs))
        return backends

    @staticmethod
    def _backend(model, cfg: EngineConfig, shared):
        """A static backend holds one stream's KV buffers and graphs: one per stream, over one fused decoder."""
        if isinstance(shared, DynamicBackend):
            return shared
        if shared is not None:
            return StaticBackend(model, cfg, fused=shared)
        return pick_backend(model, cfg)

    def __getitem__(self, stream_id: str) -> StreamEngine:
        return self.streams[stream_id]

    # Synchronous use.
    def process_round(self, frames: dict[str, tuple[np.ndarray, float, Any]]) -> dict[str, Decision | None]:
        """Decide one frame per listed stream ``{id: (rgb, t, meta)}`` with batched towers; answers inline."""
        decisions = self._step_round(*self._read_round(frames))
        for stream_id in frames:
            self.streams[stream_id].run_jobs_inline()
        return decisions

    def process_rounds(self, rounds: Iterable[dict[str, tuple[np.ndarray, float, Any]]]) -> Iterator[dict]:
        """``process_round`` over a sequence of rounds, pipelined: while a round's batched LLM step runs on its
        stream (bandwidth-bound), the next rounds, up to the next one with a decided frame, are accepted and
        routed and their vision towers (compute-bound) queued on the caller's stream, so the GPU runs both at
        once. Yields each round's decisions in order, the same as ``process_round`` round by round (frames are
        routed by time only; a round's context work starts after the previous round's decisions). Rounds read
        ahead are decided as the iteration goes on: stopping it early leaves them accepted, undecided."""
        source, ahead, ended = iter(rounds), deque(), [False]

        def read_ahead() -> None:
            while not ended[0] and len(ahead) < LOOKAHEAD_ROUNDS and not any(
                    not isinstance(r, Exception) and GENERAL in r[1].values() for r in ahead):
                frames = next(source, None)
                if frames is None:
                    ended[0] = True
                    return
                try:
                    ahead.append(self._read_round(frames))
                except Exception as err:  # raised in its turn, after the rounds before it (as process_round would)
                    ahead.append(err)
                    ended[0] = True

        read_ahead()
        while ahead:
            current = ahead.popleft()
            if isinstance(current, Exception):
                raise current
            decisions = self._step_round(*current, meanwhile=read_ahead)
            for stream_id in current[0]:
                self.streams[stream_id].run_jobs_inline()
            yield decisions
            read_ahead()

    def flush(self) -> None:
        for engine in self.streams.values():
            engine.flush()

    # The round: route, batched towers, one batched LLM step, then each stream's decision.
    def _read_round(self, frames: dict[str, tuple[np.ndarray, float, Any]]) -> tuple[dict, dict, dict]:
        """Accept and route one frame per listed stream and queue their towers: (items, routes, towers)."""
        items = {sid: self.streams[sid].accept_frame(rgb, t, meta) for sid, (rgb, t, meta) in frames.items()}
        return items, *self._route(items)

    def _route(self, items: dict[str, QueuedFrame]) -> tuple[dict, dict]:
        routes = {sid: self.streams[sid].route(item.time) for sid, item in items.items()}
        towers = self._batched_towers(items, routes) if self.batch_towers else {}
        self.rounds += 1
        self.batched_frames += sum(route != SKIP for route in routes.values())
        return routes, towers

    def _step_round(self, items: dict[str, QueuedFrame], routes: dict, towers: dict,
                    meanwhile=None) -> dict[str, Decision | None]:
        """The round's decisions; ``meanwhile()`` runs on the host while its batched LLM step runs on the GPU."""
        out: dict[str, Decision | None] = {}
        prepared = {}
        for sid, item in items.items():
            try:
                prepared[sid] = self.streams[sid].begin_frame(item, routes[sid], towers.get(sid))
            except Exception as err:  # one bad step must not end the stream (nor the others)
                self.streams[sid].frame_failed(err)
                out[sid] = None
        fed = self._batched_llm(prepared, meanwhile)
        for sid, work in prepared.items():
            engine = self.streams[sid]
            try:
                out[sid] = engine.end_frame(items[sid], work, fed.get(sid))
            except Exception as err:
                engine.frame_failed(err)
                out[sid] = None
        return out

    def _batched_llm(self, prepared: dict, meanwhile=None) -> dict[str, tuple[int, torch.Tensor]]:
        """One LLM step for every decided frame whose piece is the plain frame: ``{id: (start, logits [V])}``."""
        due = [(sid, self.streams[sid].plain_frame_state(), work) for sid, work in prepared.items()
               if self.batched is not None and isinstance(work, PendingFrame)]
        due = [(sid, state, work) for sid, state, work in due if state is not None]
        try:
            results = self.batched.run([state for _, state, _ in due], [self._rows[sid] for sid, _, _ in due],
                                       [work.embeds for _, _, work in due], wait=meanwhile is None) if due else []
        except Exception as err:  # the frames of this round are lost for these streams, as one failed step would be
            for sid, _, _ in due:
                self.streams[sid].frame_failed(err)
                prepared.pop(sid)
            due = []
        finally:
            if meanwhile is not None:
                try:
                    meanwhile()
                finally:
                    if self.batched is not None:
                        self.batched.wait()
        if not due:
            return {}
        self.llm_batches += 1
        self.llm_batched_frames += len(due)
        return {sid: result for (sid, _, _), result in zip(due, results)}

    @torch.no_grad()
    def _batched_towers(self, items: dict[str, QueuedFrame], routes: dict[str, str]) -> dict[str, tuple]:
        """Tower tokens per stream ``(general [1, n, C] or None, ego [1, n, C'] or None)``, one batch per tower
        (None: the stream's own runner computes it)."""
        model = self.model
        decided = [sid for sid in items if routes[sid] == GENERAL]
        ego_fed = [sid for sid in items if routes[sid] in (GENERAL, EGO)] if model.ego is not None else []
        if not self._graphed:  # eager: a tower with one frame this round runs it through the stream's own runner
            decided = decided if len(decided) > 1 else []
            ego_fed = ego_fed if len(ego_fed) > 1 else []
        general = self._tower(model.vision, "general", [items[sid].rgb for sid in decided])
        ego = self._tower(model.ego, "ego", [items[sid].rgb for sid in ego_fed])
        out = {sid: [None, None] for sid in set(decided) | set(ego_fed)}
        for i, sid in enumerate(decided):
            out[sid][0] = general[i:i + 1]
        for i, sid in enumerate(ego_fed):
            out[sid][1] = ego[i:i + 1]
        return {sid: tuple(pair) for sid, pair in out.items()}

    def _tower(self, encoder, source: str, frames: list[np.ndarray]) -> torch.Tensor | None:
        if not frames:
            return None
        if source in self._graphed:
            return self._graphed[source](frames)  # [B, n, C]
        pixels = torch.cat([self.model.preprocess(rgb, source) for rgb in frames])  # [B, 3, S, S]
        return encoder.frame_tokens(pixels)  # [B, n, C]

    # Threads.
    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self.slow.start()
        self._thread = threading.Thread(target=self._fast_loop, name="lionfs-fast-group", daemon=True)
        for engine in self.streams.values():
            engine.set_driver(self._thread)  # the engines are started: push_frame, jobs on the slow thread
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self.doorbell.set()
        self._thread.join(STOP_TIMEOUT_S)
        self._thread = None
        for engine in self.streams.values():
            engine.set_driver(None)
            engine.cancel_waiting_jobs()
        self.slow.stop(STOP_TIMEOUT_S)
        for engine in self.streams.values():
            engine.commit_outcomes()

    def _fast_loop(self) -> None:
        while not self._stop.is_set():
            self.doorbell.clear()
            items = {}
            for sid, engine in self.streams.items():
                engine.commit_outcomes()
                item = engine.queue.pop()
                if item is not None:
                    items[sid] = item
            if items:
                self._step_round(items, *self._route(items))
            for engine in self.streams.values():
                engine.start_next_job()
            if not items and not any(len(e.queue) for e in self.streams.values()):
                self.doorbell.wait(QUEUE_POLL_S)

    # Introspection.
    def stats(self) -> dict:
        per_stream = {sid: engine.stats() for sid, engine in self.streams.items()}
        return {"streams": per_stream, "rounds": self.rounds, "batched_frames": self.batched_frames,
                "llm_batches": self.llm_batches, "llm_batched_frames": self.llm_batched_frames,
                "decided": sum(s["decided"] for s in per_stream.values()),
                "slow_served": dict(self.slow.served), "running": self._thread is not None}

    def ids(self) -> Iterable[str]:
        return self.streams.keys()
