-- Dedup ratio per hour and topic, from the raw archive (before event_id dedup):
--   duplicate_delivery_ratio = share of records that repeat an event_id already seen (at-least-once
--                              producers);
--   dedup_ratio              = share of records the streaming buffer+dedup window folds away, i.e.
--                              1 - distinct graph keys (the edge each record updates) / records.
with raw as (
    select topic, kafka_ts, event_id, graph_key from {{ ref('stg_member_login') }}
    union all
    select topic, kafka_ts, event_id, graph_key from {{ ref('stg_member_playback') }}
    union all
    select topic, kafka_ts, event_id, graph_key from {{ ref('stg_member_gaming') }}
)
select
    date_trunc('hour', kafka_ts) as hour,
    topic,
    count(*) as records,
    count(distinct event_id) as distinct_events,
    count(distinct graph_key) as distinct_graph_keys,
    1.0 - count(distinct event_id) / count(*)::double as duplicate_delivery_ratio,
    1.0 - count(distinct graph_key) / count(*)::double as dedup_ratio
from raw
group by 1, 2
