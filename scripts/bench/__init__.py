"""The benchmark scripts, run as modules from the repository root.

    python -m scripts.bench.peers --help      (what ``scripts/bench/run`` runs)

Entries: ``peers`` (the stacks against each other), ``groups`` (group messages against
Django Channels: ``scripts/bench/groups [--quick]``; ``groups_load`` is its load generator,
``groups_stats`` its figures and report), ``scaling``, ``bridge_overhead``,
``native_mysql``, ``idle_conns``, ``process_lag``; ``raw_tornado`` is the ceiling stack that
``peers`` starts. The shared parts: ``harness`` (ports, processes, readiness, RSS), ``wrk``
(its command line, its output, the Lua script spreading it over ports), ``proxy`` (nginx as
``hybrid nginx`` renders it, in front of any stack), ``stacks``, ``endpoints``,
``database``, ``tools``, ``measure``, ``targets``, ``rounds``, ``report`` and ``plot``.
"""
