-- Transitions per host, side and state change, last hour: what the exit
-- summary and tcpstate_transitions_total count, per host.
SELECT
    host_name AS host,
    side,
    old,
    new,
    count() AS transitions
FROM tcpstate.transitions
WHERE time >= now() - INTERVAL 1 HOUR
GROUP BY host, side, old, new
ORDER BY host, side, transitions DESC, old, new
