#!/usr/bin/env bash
# make bench-mpi: candidates per hour of the search with the real training
# engine (bench/bench_mpi.c), in one process and under mpirun on this machine,
# and the scaling efficiency. Every run evaluates the same candidates (the
# evolution's random start), so the runs differ only in how they are spread.
#   1 rank        the plain process, threads = all cores (what `nas search` does)
#   1 rank, 1 thr the plain process on one core: the unit of work of a worker
#   2 ranks       rank 0 coordinates, 1 worker on all cores
#   N ranks       N-1 workers sharing the cores (N = cores + 1)
# Scaling efficiency = cand/h(N ranks) / ((N-1) x cand/h(1 rank, 1 thread)).
# Usage: scripts/bench-mpi.sh BENCH_BINARY [bench args]
set -eu
bin=$1; shift
args=${*:---evals 8 --images 256 --epochs 1}
cores=$(nproc)
root=""; [ "$(id -u)" = 0 ] && root=--allow-run-as-root
mpi="mpirun $root --oversubscribe --bind-to none"
# a one-host job needs no ssh, but Open MPI 4.1 looks for it unless the agent is empty
export OMPI_MCA_plm_rsh_agent=${OMPI_MCA_plm_rsh_agent-}
cph() { sed -n 's/.*cand_per_hour=\([0-9.]*\).*/\1/p'; }
echo "bench-mpi: $cores cores, load average $(cut -d' ' -f1-3 /proc/loadavg), args: $args"
one=$(nice "$bin" $args);                 echo "1 rank:            $one"
one1=$(NAS_THREADS=1 nice "$bin" $args);  echo "1 rank, 1 thread: $one1"
two=$(nice $mpi -np 2 "$bin" $args);      echo "2 ranks:           $two"
n=$((cores + 1))
many=$(nice $mpi -np $n "$bin" $args);    echo "$n ranks:           $many"
awk -v a="$(echo "$one" | cph)" -v a1="$(echo "$one1" | cph)" -v b="$(echo "$two" | cph)" \
    -v c="$(echo "$many" | cph)" -v n=$n 'BEGIN {
    printf "candidates per hour: 1 rank %.0f, 2 ranks %.0f, %d ranks %.0f\n", a, b, n, c
    printf "2 ranks against 1: %.2f (1 worker on the same cores: the cost of distributing)\n", b / a
    printf "scaling efficiency, %d workers: %.2f (against %d x the 1-thread process)\n", n - 1, c / ((n - 1) * a1), n - 1
    printf "%d ranks against the plain process: %.2fx\n", n, c / a }'
