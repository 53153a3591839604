#!/bin/bash
# Times the README quickstart, command by command (run from anywhere with dsdistill on PATH or DSDISTILL=...).
set -e
D=${DSDISTILL:-dsdistill}
case "$D" in */*) D=$(realpath "$D") ;; esac   # a path given relative to here still works after the cd
OUT=${OUT:-$(mktemp -d)}; cd "$OUT"
s=$(date +%s.%N)
$D select --method random --dataset fashion-mnist --ipc 1 --out random.h5 --quiet
a=$(date +%s.%N)
$D distill --method dm.fmnist-cpu --dataset fashion-mnist --ipc 1 --iterations 100 --out dm.h5 --quiet
b=$(date +%s.%N)
$D compare dm.h5 random.h5 --protocol dc-quick --quiet
e=$(date +%s.%N)
python3 -c "print(f'select {$a-$s:.1f} s, distill {$b-$a:.1f} s, compare {$e-$b:.1f} s, total {$e-$s:.1f} s')"
