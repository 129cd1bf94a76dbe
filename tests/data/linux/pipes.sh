#!/bin/bash
# pipelines, command substitution, background jobs, subshells, traps
set -u
words=$(printf '%s\n' pear apple fig banana | sort | tr '\n' ' ')
echo "sorted: $words"
seq 1 2000 | grep 7 | wc -l
( echo "in a subshell"; exit 3 ); echo "subshell status $?"
for i in 1 2 3; do ( echo "job $i" > /tmp/vmrr-pipes-$$-$i ) & done
wait
cat /tmp/vmrr-pipes-$$-1 /tmp/vmrr-pipes-$$-2 /tmp/vmrr-pipes-$$-3; rm -f /tmp/vmrr-pipes-$$-*
trap 'echo "trapped USR1"' USR1
kill -USR1 $$
count=0; while read -r line; do count=$((count + ${#line})); done < <(seq 1 300)
echo "chars: $count"
sh -c 'kill -TERM $$'; echo "killed child status $?"
echo done | cat | cat | cat
exit 4
