"""An exact solver for small problems: branch and bound over active schedules.

Every tile is placed, in some order that respects dependences, at the earliest cycle a
unit of its pool is free long enough (gaps included): the serial schedule generation
scheme. The schedules it generates over all such orders (the active schedules) include an
optimal one, so searching the orders finds the optimum. A branch is cut when the partial
schedule plus the longest remaining path (or the busiest pool's remaining work) cannot
beat the best schedule found; the list schedule is the first incumbent, and the search
stops as soon as the lower bound is reached. Meant for hand-sized graphs (tests,
checking the list scheduler), not for models.
"""

from __future__ import annotations

from harden.schedule.problem import Problem, Solution
from harden.schedule.solver import list_schedule
from harden.schedule.tasks import lower_bound, tails, task_graph

MAX_EXACT_TASKS = 16
# Search nodes before giving up on proving optimality (the best schedule found is kept).
NODE_BUDGET = 200_000


class ProblemTooLarge(ValueError):
    """More tiles than the exact solver searches."""


def exact_schedule(problem: Problem) -> Solution:
    """An optimal (minimum makespan) schedule of a problem of at most MAX_EXACT_TASKS tiles."""
    graph = task_graph(problem)
    n = graph.size
    if n > MAX_EXACT_TASKS:
        raise ProblemTooLarge(f"solver=exact handles up to {MAX_EXACT_TASKS} tiles; @{problem.function} has {n}")
    tail = tails(graph)
    bound = lower_bound(problem, graph).value
    incumbent = list_schedule(problem, graph)
    best = {"makespan": incumbent.makespan(problem), "start": None, "unit": None}  # start None: the list schedule
    preds: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    for t, succ in enumerate(graph.succ):
        for s, delay in succ:
            preds[s].append((t, delay))
    busy = [[[] for _ in pool.units] for pool in problem.pools]  # per unit: sorted (start, end)
    start, unit = [0] * n, [-1] * n
    placed = [False] * n

    def earliest(task: int) -> tuple[int, int]:
        ready = max((start[p] + graph.duration[p] + d for p, d in preds[task]), default=0)
        pool, duration = graph.pool[task], graph.duration[task]
        if pool is None:
            return ready, -1
        options = []
        for k, intervals in enumerate(busy[pool]):
            t = ready
            for s, e in intervals:
                if t + duration <= s:
                    break
                t = max(t, e)
            options.append((t, k))
        return min(options)

    pool_units = [len(pool.units) for pool in problem.pools]
    nodes = [0]

    def node_bound() -> int:
        """Earliest end of the unplaced tiles, by paths and by each pool's remaining work."""
        est = [0] * n
        first: dict[int, int] = {}
        work: dict[int, int] = {}
        bound_here = 0
        for t in range(n):  # tasks are numbered in a topological order
            if placed[t]:
                continue
            est[t] = max((start[p] + graph.duration[p] + d if placed[p] else est[p] + graph.duration[p] + d
                          for p, d in preds[t]), default=0)
            bound_here = max(bound_here, est[t] + tail[t])
            pool = graph.pool[t]
            if pool is not None:
                free = min(intervals[-1][1] if intervals else 0 for intervals in busy[pool])
                first[pool] = min(first.get(pool, max(est[t], free)), max(est[t], free))
                work[pool] = work.get(pool, 0) + graph.duration[t]
        for pool, total in work.items():
            bound_here = max(bound_here, first[pool] + -(-total // pool_units[pool]))
        return bound_here

    def search(count: int, makespan: int) -> bool:
        """Places the remaining tiles; True once a schedule meets the lower bound (or the
        node budget is spent)."""
        nodes[0] += 1
        if nodes[0] > NODE_BUDGET:
            return True
        if count < n and max(makespan, node_bound()) >= best["makespan"]:
            return False
        if count == n:
            if makespan < best["makespan"]:
                best.update(makespan=makespan, start=list(start), unit=list(unit))
            return best["makespan"] <= bound
        eligible = [t for t in range(n) if not placed[t] and all(placed[p] for p, _ in preds[t])]
        free = [t for t in eligible if graph.pool[t] is None]
        # A view takes no unit: placing it now or later gives the same schedules.
        # Otherwise the most critical tile first, so good schedules (and early cuts) come first.
        for task in free[:1] or sorted(eligible, key=lambda t: (-tail[t], t)):
            at, k = earliest(task)
            if at + tail[task] >= best["makespan"]:
                continue  # cannot beat the best schedule found
            start[task], unit[task], placed[task] = at, k, True
            if k >= 0:
                intervals = busy[graph.pool[task]][k]
                intervals.append((at, at + graph.duration[task]))
                intervals.sort()
            done = search(count + 1, max(makespan, at + graph.duration[task]))
            if k >= 0:
                busy[graph.pool[task]][k].remove((at, at + graph.duration[task]))
            placed[task] = False
            if done:
                return True
        return False

    search(0, 0)
    if best["start"] is None:
        return incumbent
    starts, units = [], []
    for index, op in enumerate(problem.operations):
        base = graph.offsets[index]
        starts.append(best["start"][base: base + op.tiles])
        units.append(best["unit"][base: base + op.tiles])
    return Solution(starts, units)
