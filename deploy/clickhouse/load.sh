#!/bin/sh
# Loads the files `tcpstate -o json -w FILE --rotate-secs N` has handed over
# (FILE.<UTC time>Z, never written again) into a ClickHouse table, oldest
# first, deleting each once ClickHouse has taken it. FILE itself, the one
# being written, is left alone. Safe to run again: a file that fails to load
# stays for the next run. Run it from cron or tcpstate-load.timer.
#
#   load.sh FILE TABLE [clickhouse-client options …]
#   load.sh /var/log/tcpstate/events.json tcpstate.transitions --host ch.example
#   load.sh /var/log/tcpstate/conns.json tcpstate.connections --input_format_skip_unknown_fields=1
set -eu
if [ $# -lt 2 ]; then
    echo "usage: $0 FILE TABLE [clickhouse-client options ...]" >&2
    exit 2
fi
file=$1
table=$2
shift 2
for done in "$file".[0-9]*Z "$file".[0-9]*Z.[0-9]*; do
    [ -f "$done" ] || continue
    clickhouse-client "$@" --query "INSERT INTO $table FORMAT JSONEachRow" < "$done"
    rm -f -- "$done"
done
