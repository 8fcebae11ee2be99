"""The tile-level task graph of a Problem, its critical path and its lower bound.

Shared by the solver (critical-path priorities) and by the summary and the checker (the
lower bound a makespan is compared with).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

import numpy as np

from harden.schedule.problem import Problem


@dataclass
class TaskGraph:
    """Tasks are (op, tile) pairs numbered op by op; `succ[t]` lists (task, delay)."""

    offsets: list[int]
    op_of: list[int]
    duration: list[int]
    pool: list[int | None]
    succ: list[list[tuple[int, int]]]
    pred_count: list[int]

    @property
    def size(self) -> int:
        return len(self.op_of)


def task_graph(problem: Problem) -> TaskGraph:
    offsets, op_of, duration, pool = [], [], [], []
    for index, op in enumerate(problem.operations):
        offsets.append(len(op_of))
        op_of.extend([index] * op.tiles)
        duration.extend(op.durations)
        pool.extend([op.pool] * op.tiles)
    succ: list[list[tuple[int, int]]] = [[] for _ in op_of]
    pred_count = [0] * len(op_of)
    for dep in problem.dependences:
        base_p, base_c = offsets[dep.producer], offsets[dep.consumer]
        for t, tiles in enumerate(dep.ranges):
            if tiles is None:
                continue
            consumer = base_c + t
            for i in range(tiles[0], tiles[1] + 1):
                succ[base_p + i].append((consumer, dep.delay))
            pred_count[consumer] += tiles[1] - tiles[0] + 1
    return TaskGraph(offsets, op_of, duration, pool, succ, pred_count)


def tails(graph: TaskGraph) -> list[int]:
    """Longest path from each task's start to the end of the schedule (its own time included).

    Tasks are numbered in a topological order (ops in program order, tiles within an op
    are independent), so one backward sweep suffices.
    """
    tail = [0] * graph.size
    for t in reversed(range(graph.size)):
        longest = 0
        for s, delay in graph.succ[t]:
            if delay + tail[s] > longest:
                longest = delay + tail[s]
        tail[t] = graph.duration[t] + longest
    return tail


def heads(graph: TaskGraph) -> list[int]:
    """Longest path from the start of the schedule to each task's start."""
    head = [0] * graph.size
    for t in range(graph.size):
        end = head[t] + graph.duration[t]
        for s, delay in graph.succ[t]:
            if end + delay > head[s]:
                head[s] = end + delay
    return head


def energetic_bound(problem: Problem, graph: TaskGraph, tail: list[int]) -> int:
    """A lower bound that charges each op for the work its unit pool must finish first.

    Every tile an op X transitively needs on X's own unit pool (X's tiles included) must
    run on that pool's m units, so X cannot complete before h + W(h) / m for any cycle h,
    where W(h) is the work of those tiles whose earliest start (head) is h or later: they
    all run after h (release dates, as in Horn's bound for parallel machines). With h the
    earliest head this is "all the work after the first start"; later h count the work
    that an earlier layer's chain holds back, during which the pool may idle. The same
    holds, plus one of X's own tiles, for the pools of X's producers (seen through views),
    whose contention the critical path ignores (q's and k's data movement sharing the
    switch units before attention, say). Consumers that need all of X
    cannot start before X completes, which carries the bound down a chain of layers:
    when each layer's attention or matrix work sits on its own units, the plain bounds
    count one layer's work, this one counts every layer's. Two chain bounds
    (`_chain_bound`) add what follows an upstream pool's work: to the completion of ops
    read whole, and to the start of tiles that gather a run of a producer's tiles (a
    per-row reduction read by a coarser tile), whose pace a serial unit upstream sets.
    The result is valid (no schedule is shorter): earliest starts, work and tails are all
    lower bounds.
    """
    n = graph.size
    ancestors = [0] * n  # bit q set: task q must finish before this task starts
    for t in range(n):
        reach = ancestors[t] | (1 << t)
        for s, _ in graph.succ[t]:
            ancestors[s] |= reach
    # Per pool: the tasks of the ops visited so far, by head, then by duration (bit masks),
    # and the heads in increasing order.
    buckets: dict[int, dict[int, dict[int, int]]] = {}
    head_keys: dict[int, list[int]] = {}

    head = [0] * n
    outgoing: dict[int, list] = {}
    for dep in problem.dependences:
        outgoing.setdefault(dep.producer, []).append(dep)
    after_all = [0] * len(problem.operations)
    near_pools = _producer_pools(problem)
    # Ops some consumer reads whole (a matmul's input, a reduction's): consumers wait for
    # them to complete, so a later completion bound raises everything after them.
    whole_read = [any(r == (0, op.tiles - 1) for dep in outgoing.get(i, []) for r in dep.ranges)
                  for i, op in enumerate(problem.operations)]
    # Tiles that gather several tiles of a producer but not all of it (a per-row reduction
    # read by a coarser tile): a serial producer upstream paces them.
    gathers = set()
    for dep in problem.dependences:
        count = problem.operations[dep.producer].tiles
        for tile, r in enumerate(dep.ranges):
            if r is not None and r[1] > r[0] and r != (0, count - 1):
                gathers.add(graph.offsets[dep.consumer] + tile)
    layer_first: dict[int, int] = {}  # each layer's first op
    for i, op in enumerate(problem.operations):
        layer_first.setdefault(op.layer, i)
    reach = WINDOW_LAYERS * math.ceil(len(problem.operations) / (len(layer_first) or 1))
    best = 0
    for index, op in enumerate(problem.operations):
        base = graph.offsets[index]
        tiles = range(base, base + op.tiles)
        # The op's layer and the one before, but at most `reach` ops back: in schedule order
        # (as the verifier sees a scheduled function) ops of every layer that start at
        # cycle 0 (mask and position ops) would stretch the window to the whole graph
        # (quadratic time: 116 s per bound at Llama-3.1-8B instead of 4).
        window = max(min(layer_first.get(layer, index) for layer in (op.layer - 1, op.layer)), index - reach)
        first = graph.offsets[window]
        for t in tiles:
            if t in gathers:  # the chain bound on its start
                head[t] = max(head[t], _chain_bound(problem, graph, {t: -graph.duration[t]}, ancestors[t], head, first, None))
        done = max(head[t] + graph.duration[t] for t in tiles)
        # Some tile of X runs after all of a producer it reads whole (through views too).
        done = max(done, after_all[index] + min(graph.duration[t] for t in tiles))
        needed = 0
        for t in tiles:
            needed |= ancestors[t] | (1 << t)
        if op.pool is not None:
            # The needed tasks are this op's tiles and earlier ops' (their heads are final).
            by_head = buckets.setdefault(op.pool, {})
            for t in tiles:
                if head[t] not in by_head:
                    by_head[head[t]] = {}
                    bisect.insort(head_keys.setdefault(op.pool, []), head[t])
                by_duration = by_head[head[t]]
                by_duration[graph.duration[t]] = by_duration.get(graph.duration[t], 0) | (1 << t)
        shortest = min(graph.duration[t] for t in tiles)
        for pool in near_pools[index] | ({op.pool} if op.pool is not None else set()):
            units, work, finish = len(problem.pools[pool].units), 0, 0
            for h in reversed(head_keys[pool]):
                for d, mask in buckets[pool][h].items():
                    work += d * (needed & mask).bit_count()
                if work:
                    finish = max(finish, h + math.ceil(work / units))
            done = max(done, finish if pool == op.pool else finish + shortest)
        if whole_read[index]:  # only there does X's completion carry on (see below)
            done = max(done, _chain_bound(problem, graph, {t: 0 for t in tiles}, needed, head, first, op.pool))
        best = max(best, done + min(tail[t] - graph.duration[t] for t in tiles))
        for t in tiles:  # tile-level pushes, as for heads
            end = head[t] + graph.duration[t]
            for s, delay in graph.succ[t]:
                if end + delay > head[s]:
                    head[s] = end + delay
        for dep in outgoing.get(index, []):  # consumers needing all of X wait for X to complete
            whole = (0, op.tiles - 1)
            covered = [False] * op.tiles
            for tile, tiles_needed in enumerate(dep.ranges):
                if tiles_needed == whole:
                    s = graph.offsets[dep.consumer] + tile
                    head[s] = max(head[s], done + dep.delay)
                if tiles_needed is not None:
                    covered[tiles_needed[0]: tiles_needed[1] + 1] = [True] * (tiles_needed[1] - tiles_needed[0] + 1)
            if all(covered):
                after_all[dep.consumer] = max(after_all[dep.consumer], done + dep.delay)
    return best


WINDOW_LAYERS = 4
"""How many layers' worth of ops (on average) back the chain bound looks at most."""

CHAIN_LEVELS = 16
"""About how many chain lengths q the chain bound tries per pool (more: slower, rarely tighter)."""


def _chain_bound(problem: Problem, graph: TaskGraph, targets: dict[int, int], needed: int, head: list[int],
                 first: int, skip_pool: int | None) -> int:
    """A time no schedule can reach `targets` before: the pools upstream and the chains after them.

    `targets` maps tasks to the value L takes at them: 0 for the tiles of an op X (the
    bound is then on X's completion), minus its duration for one tile c (the bound is then
    on c's start). For a pool P holding tasks the targets need, L(t) is the longest path
    from t's end to that point. Among the needed P tasks with L >= q and head >= h (a set
    that P's m units need work W / m to run, all after h), the last one ends at h + W / m
    or later, so the point is reached at h + W / m + q or later (the head-body-tail bound
    of parallel machines). L is computed over the tasks from `first` on (the op's layer and
    the one before); older ones are left out of the sets (fewer tasks: still a valid
    bound), which keeps the cost to about two layers' tiles. Tasks of `skip_pool` are left
    out too (X's own pool, which the caller bounds already).
    """
    base = min(targets)
    longest = dict(targets)
    by_pool: dict[int, list[tuple[int, int, int]]] = {}
    window = (needed >> first) & ((1 << (base - first)) - 1)
    while window:  # the needed tasks of the window, last first
        u = first + window.bit_length() - 1
        window ^= 1 << (u - first)
        best = -1
        for s, delay in graph.succ[u]:
            if s in longest:
                best = max(best, delay + graph.duration[s] + longest[s])
        if best < 0:
            continue
        longest[u] = best
        pool = graph.pool[u]
        if pool is not None and pool != skip_pool:
            by_pool.setdefault(pool, []).append((best, head[u], graph.duration[u]))
    bound = 0
    for pool, tasks in by_pool.items():
        units = len(problem.pools[pool].units)
        chain, heads_, durations = (np.array(column, dtype=np.int64) for column in zip(*tasks))
        order = np.argsort(-heads_, kind="stable")  # latest head first
        chain, heads_, durations = chain[order], heads_[order], durations[order]
        # Thresholds q: every k-th distinct L value, k = count // CHAIN_LEVELS (so between
        # CHAIN_LEVELS and twice as many, or all when fewer); any subset is valid.
        distinct = np.unique(chain)
        levels = distinct[:: -max(1, len(distinct) // CHAIN_LEVELS)]
        member = chain[None, :] >= levels[:, None]  # [level, task]: L >= q
        work = np.cumsum(member * durations[None, :], axis=1)  # of members with head >= h
        finish = np.where(member, heads_[None, :] + -(-work // units), np.iinfo(np.int64).min)
        bound = max(bound, int((finish.max(axis=1) + levels).max()))
    return bound


def _producer_pools(problem: Problem) -> list[set[int]]:
    """The unit pools of each op's producers, looking through free ops (views)."""
    producers: list[list[int]] = [[] for _ in problem.operations]
    for dep in problem.dependences:
        producers[dep.consumer].append(dep.producer)
    near: list[set[int]] = []
    for index in range(len(problem.operations)):  # producers come first
        pools: set[int] = set()
        for p in producers[index]:
            pool = problem.operations[p].pool
            if pool is None:
                pools |= near[p]
            else:
                pools.add(pool)
        near.append(pools)
    return near


@dataclass(frozen=True)
class Bounds:
    """No valid schedule is shorter than `value` = max(critical path, resource bound).

    The resource bound of a unit pool is its work divided among its units, plus the least
    time any of its tiles must wait before it can start (its head) and the least time
    that must follow the end of any of its tiles (its tail): a pool cannot start before
    its earliest head, is busy for at least work / units cycles, and whichever tile ends
    last is still followed by its tail. With heads and tails of 0 this is the plain
    "each unit's total work" bound.
    """

    critical_path: int
    resource: int
    resource_pool: str | None
    energetic: int = 0

    @property
    def value(self) -> int:
        return max(self.critical_path, self.resource, self.energetic)


def lower_bound(problem: Problem, graph: TaskGraph | None = None) -> Bounds:
    graph = graph or task_graph(problem)
    tail = tails(graph)
    head = heads(graph)
    critical = max(tail, default=0)
    pools = len(problem.pools)
    work, first, last = [0] * pools, [None] * pools, [None] * pools
    for t in range(graph.size):
        pool = graph.pool[t]
        if pool is None:
            continue
        work[pool] += graph.duration[t]
        after = tail[t] - graph.duration[t]
        first[pool] = head[t] if first[pool] is None else min(first[pool], head[t])
        last[pool] = after if last[pool] is None else min(last[pool], after)
    resource, pool_name = 0, None
    for index, pool in enumerate(problem.pools):
        if first[index] is None:
            continue
        bound = first[index] + math.ceil(work[index] / len(pool.units)) + last[index]
        if bound > resource:
            resource, pool_name = bound, pool.name
    return Bounds(critical, resource, pool_name, energetic_bound(problem, graph, tail))
