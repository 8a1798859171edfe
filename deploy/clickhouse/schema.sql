-- tcpstate's JSON lines (schema_version 2) in ClickHouse, loaded as they are:
-- every key of a line is a column of the same name and type, so
--
--   clickhouse-client --query 'INSERT INTO tcpstate.transitions FORMAT JSONEachRow' < events.json
--
-- takes them with no conversion, and a line with a key this table does not
-- know (another schema_version) is refused rather than half-loaded.
-- Written for ClickHouse 18.16 (Debian 12's clickhouse-server) and later;
-- on 19.x and later, LowCardinality(String) suits side, old, new and comm.

CREATE DATABASE IF NOT EXISTS tcpstate;

-- One row per transition (`tcpstate -o json`).
CREATE TABLE IF NOT EXISTS tcpstate.transitions
(
    schema_version UInt8,
    host           Nullable(String),   -- --hostname; null without it
    time_unix_nano UInt64,             -- wall clock, ns since 1970
    ts_ns          UInt64,             -- the kernel's CLOCK_MONOTONIC
    conn_id        UInt64,             -- one connection's id, joins its rows
    side           String,             -- server | client
    old            String,             -- a TCP state (TIME_WAIT …)
    new            String,
    probe          Nullable(String),   -- --raw probe events only
    family         UInt8,              -- 4 | 6
    saddr          String,             -- local end
    sport          UInt16,
    daddr          String,             -- peer
    dport          UInt16,
    netns          UInt32,
    cgroup_id      Nullable(UInt64),   -- the socket's cgroup v2; null: not known
    cgroup         Nullable(String),   -- its path (/system.slice/nginx.service)
    container_id   Nullable(String),   -- when the path names a container
    container_runtime Nullable(String),-- docker, containerd, cri-o, podman …
    pod_uid        Nullable(String),   -- a Kubernetes pod's UID
    pid            Nullable(UInt32),
    comm           Nullable(String),
    prev_state_ms  Nullable(Float64),  -- time spent in `old`
    inferred       UInt8,
    earliest_ns    Nullable(UInt64),
    skaddr         Nullable(String),   -- --skaddr / --raw only
    -- Computed at insert, for partitions and sorting:
    time           DateTime MATERIALIZED toDateTime(intDiv(time_unix_nano, 1000000000)),
    host_name      String   MATERIALIZED ifNull(host, '')
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(time)
ORDER BY (host_name, time_unix_nano);

-- One row per connection (`tcpstate --connections -o json`). Its `states`
-- (an array of objects) has no column: ClickHouse before 21.x cannot take
-- one, so load with --input_format_skip_unknown_fields=1; the time in each
-- state is in the transitions table, and `time_wait_ns` is here.
CREATE TABLE IF NOT EXISTS tcpstate.connections
(
    schema_version UInt8,
    host           Nullable(String),
    conn_id        UInt64,
    side           String,
    side_by        String,             -- server | origin | ports
    start_ns       UInt64,
    end_ns         UInt64,
    start_unix_ns  UInt64,
    end_unix_ns    UInt64,
    duration_ns    UInt64,
    family         UInt8,
    saddr          String,
    sport          UInt16,
    daddr          String,
    dport          UInt16,
    netns          UInt32,
    cgroup_id      Nullable(UInt64),   -- the socket's cgroup v2; null: not known
    cgroup         Nullable(String),   -- its path (/system.slice/nginx.service)
    container_id   Nullable(String),   -- when the path names a container
    container_runtime Nullable(String),-- docker, containerd, cri-o, podman …
    pod_uid        Nullable(String),   -- a Kubernetes pod's UID
    pid            Nullable(UInt32),
    comm           Nullable(String),
    time_wait_ns   Nullable(UInt64),
    bytes_sent     Nullable(UInt64),
    bytes_acked    Nullable(UInt64),
    bytes_received Nullable(UInt64),
    bytes_retrans  Nullable(UInt64),
    segs_in        Nullable(UInt32),
    segs_out       Nullable(UInt32),
    retransmits    Nullable(UInt32),
    srtt_us        Nullable(UInt32),
    min_rtt_us     Nullable(UInt32),
    error          Nullable(String),   -- ECONNREFUSED …
    end            String,             -- refused, time_wait_expired …
    open           UInt8,
    time           DateTime MATERIALIZED toDateTime(intDiv(end_unix_ns, 1000000000)),
    host_name      String   MATERIALIZED ifNull(host, '')
)
ENGINE = MergeTree()
PARTITION BY toYYYYMMDD(time)
ORDER BY (host_name, end_unix_ns);
