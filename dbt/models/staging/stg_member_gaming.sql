-- Game events (vertical "gaming"). graph_key: the plays edge profile -> game.
select
    event_id,
    cast(event_time as timestamptz) as event_time,
    account_id,
    profile_id,
    device_id,
    cast(device_type as varchar) as device_type,
    'gaming' as vertical,
    'member.gaming' as topic,
    cast(kafka_ts as timestamptz) as kafka_ts,
    profile_id || '|' || game_id as graph_key
from {{ source('archive', 'member_gaming') }}
