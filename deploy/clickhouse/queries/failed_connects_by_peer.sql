-- Connects that never got established, by peer, last day, from the
-- transitions alone (refused, timed out or unreachable: the connections
-- table tells them apart).
SELECT
    host_name AS host,
    daddr AS peer,
    dport AS port,
    count() AS failed,
    round(avg(prev_state_ms), 3) AS avg_ms_in_syn_sent
FROM tcpstate.transitions
WHERE side = 'client' AND old = 'SYN_SENT' AND new = 'CLOSE'
  AND time >= now() - INTERVAL 1 DAY
GROUP BY host, peer, port
ORDER BY failed DESC, host, peer, port
LIMIT 20
