-- Refused connects by peer, last day: who answers our SYN with a reset
-- (nothing listening, or a firewall's REJECT).
SELECT
    host_name AS host,
    daddr AS peer,
    dport AS port,
    count() AS refused
FROM tcpstate.connections
WHERE end = 'refused'
  AND time >= now() - INTERVAL 1 DAY
GROUP BY host, peer, port
ORDER BY refused DESC, host, peer, port
LIMIT 20
