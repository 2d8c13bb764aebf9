-- Logins, one row per archived record, typed and labelled with their vertical.
select
    event_id,
    cast(event_time as timestamptz) as event_time,
    account_id,
    profile_id,
    device_id,
    cast(device_type as varchar) as device_type,
    'login' as vertical,
    'member.login' as topic,
    cast(kafka_ts as timestamptz) as kafka_ts,
    account_id || '|' || device_id as graph_key
from {{ source('archive', 'member_login') }}
