-- Playback events (vertical "streaming"). graph_key is what the streaming dedup window merges on:
-- the started_watching edge profile -> title.
select
    event_id,
    cast(event_time as timestamptz) as event_time,
    account_id,
    profile_id,
    device_id,
    cast(device_type as varchar) as device_type,
    'streaming' as vertical,
    'member.playback' as topic,
    cast(kafka_ts as timestamptz) as kafka_ts,
    profile_id || '|' || title_id as graph_key
from {{ source('archive', 'member_playback') }}
