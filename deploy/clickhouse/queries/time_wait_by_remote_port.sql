-- Time in TIME_WAIT by remote port, last day: which peers' connections this
-- fleet closes first, and so holds a local port for.
SELECT
    dport AS remote_port,
    count() AS time_waits,
    round(avg(prev_state_ms)) AS avg_ms,
    round(max(prev_state_ms)) AS max_ms
FROM tcpstate.transitions
WHERE old = 'TIME_WAIT' AND new = 'CLOSE' AND prev_state_ms IS NOT NULL
  AND time >= now() - INTERVAL 1 DAY
GROUP BY remote_port
ORDER BY time_waits DESC, remote_port
LIMIT 20
