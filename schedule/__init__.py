"""Static tensor-streaming schedules of harden-level graphs on machine models.

Kept apart as CIRCT's scheduling infrastructure keeps them (see docs/design.md):

* machine.py, machines/*.json: machine models (units, SRAM, clock) as data;
* ops.py, cost_model.py, layers.py, placement.py, build.py: the problem, built from IR;
* problem.py: the problem and its solution as plain data;
* solver.py (with tasks.py): list scheduling with critical-path priority and
  forward-backward improvement; exact.py: branch and bound for hand-sized graphs;
  tasks.py also holds the lower bounds a makespan is judged against;
* check.py, memory.py: whether a solution is valid (dependences, units, SRAM);
* summary.py, attributes.py, report.py: the numbers, the IR attributes, JSON and Gantt;
* schedules.py: the pieces put together for the passes.
"""
