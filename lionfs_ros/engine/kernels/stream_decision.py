"""A decided frame's speak-or-stay-silent rule (``model.stream_decision``) on its logits row, in one launch.

``stream_decision`` on a Llama-3 vocabulary (128,256 logits) is a float copy, a softmax and an argmax over one row,
each a single-block kernel on the GPU (34 and 27 us on an H200, queued behind a decided frame's step), then the
compare and the stack. Here ``cdiv(V, BLOCK)`` programs each reduce one block of the row to its max, the first index
holding it and ``sum(exp(x - max))``; the last program to finish (a counter, as in the few-rows kernel's split-K)
merges the blocks at once: the row's max ``M``, the first index holding it (the argmax, ties to the lowest index as
``torch.argmax``), ``S = sum_c s_c * exp(m_c - M)``, ``P(interval) = exp(x_interval - M) / S``, and stores
``[P(interval), respond, top]`` as float32 for one read-back (token ids below 2^24 are exact in float32).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .few_rows_linear import tile_counters

BLOCK = 2048  # logits per program
MAX_BLOCKS = 1024  # the merge reads every block's partials at once: vocabularies up to BLOCK x this


@triton.jit
def _decision_kernel(x_ptr, max_ptr, sum_ptr, arg_ptr, count_ptr, out_ptr, V, interval, threshold,
                     BLOCK: tl.constexpr, BLOCKS: tl.constexpr):
    c = tl.program_id(0)
    n = tl.num_programs(0)
    v = c * BLOCK + tl.arange(0, BLOCK)  # [BLOCK]
    x = tl.load(x_ptr + v, mask=v < V, other=float("-inf")).to(tl.float32)
    m, arg = tl.max(x, 0, return_indices=True, return_indices_tie_break_left=True)
    tl.store(max_ptr + c, m)
    tl.store(sum_ptr + c, tl.sum(tl.exp(x - m), 0))
    tl.store(arg_ptr + c, c * BLOCK + arg)
    tl.debug_barrier()  # the partials are written before the count says so
    done = tl.atomic_add(count_ptr, 1, sem="acq_rel", scope="gpu")
    if done == n - 1:  # the last block: every other block's partials are visible (acquire)
        cs = tl.arange(0, BLOCKS)  # [BLOCKS]
        ok = cs < n
        ms = tl.load(max_ptr + cs, mask=ok, other=float("-inf"), cache_modifier=".cg")
        ss = tl.load(sum_ptr + cs, mask=ok, other=0.0, cache_modifier=".cg")
        args = tl.load(arg_ptr + cs, mask=ok, other=V, cache_modifier=".cg")
        top_m = tl.max(ms, 0)
        total = tl.sum(ss * tl.exp(ms - top_m), 0)
        top = tl.min(tl.where(ms == top_m, args, V), 0)  # the lowest index holding the max
        p = tl.exp(tl.load(x_ptr + interval).to(tl.float32) - top_m) / total
        respond = (p < threshold) | (top != interval)
        tl.store(out_ptr, p)
        tl.store(out_ptr + 1, respond.to(tl.float32))
        tl.store(out_ptr + 2, top.to(tl.float32))
        tl.store(count_ptr, 0)  # ready for the next call on this stream


def stream_decision_row(logits: torch.Tensor, interval_id: int, threshold: float,
                        workspace: dict | None = None) -> torch.Tensor:
    """``logits [V]`` (one row, contiguous) -> float32 ``[3]``: ``[P(interval), respond (0/1), top token]`` by
    ``model.stream_decision``'s rule. No host sync (the caller reads the three back at once). ``workspace``: a dict
    the caller keeps, where the partials and the result are allocated once per (device, vocabulary) and reused (the
    caller reads each result back before its next call); without it they are allocated per call."""
    if logits.dim() != 1 or logits.stride(0) != 1:
        raise ValueError(f"stream_decision_row: one contiguous row of logits, got {tuple(logits.shape)}")
    vocab = logits.shape[0]
    blocks = triton.cdiv(vocab, BLOCK)
    if blocks > MAX_BLOCKS or not 0 <= interval_id < vocab:
        raise ValueError(f"stream_decision_row: {vocab} logits (at most {BLOCK * MAX_BLOCKS}), interval id "
                         f"{interval_id}")
    key = (logits.device, vocab)
    buffers = workspace.get(key) if workspace is not None else None
    if buffers is None:
        buffers = (torch.empty(blocks, dtype=torch.float32, device=logits.device),  # block maxima
                    torch.empty(blocks, dtype=torch.float32, device=logits.device),  # block sums of exp(x - max)
                    torch.empty(blocks, dtype=torch.int32, device=logits.device),  # block argmax
                    torch.empty(3, dtype=torch.float32, device=logits.device))  # the result
        if workspace is not None:
            workspace[key] = buffers
    maxima, sums, args, out = buffers
    _decision_kernel[(blocks,)](logits, maxima, sums, args, tile_counters(1, logits.device), out, vocab, interval_id,
                                float(threshold), BLOCK=BLOCK, BLOCKS=triton.next_power_of_2(blocks))
    return out
