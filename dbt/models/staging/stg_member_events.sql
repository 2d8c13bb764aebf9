-- Every member event of every vertical, deduplicated by event_id (a redelivered event counts once).
with unioned as (
    select * from {{ ref('stg_member_login') }}
    union all
    select * from {{ ref('stg_member_playback') }}
    union all
    select * from {{ ref('stg_member_gaming') }}
)
select *
from unioned
where account_id is not null and event_time is not null
qualify row_number() over (partition by topic, event_id order by kafka_ts) = 1
