#!/bin/sh
# The ops console's long-running demo: a line a second for a minute.
i=1
while [ "$i" -le 60 ]; do
    echo "step $i of 60"
    i=$((i + 1))
    sleep 1
done
echo "done"
