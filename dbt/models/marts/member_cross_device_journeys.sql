-- Cross-device journeys per member: an account's activity split into journeys wherever it pauses
-- for more than `journey_gap_minutes`; a journey is cross-device when it touches 2+ devices
-- (e.g. browse on the phone, then watch on the TV). One row per (account_id, journey_seq).
with ordered as (
    select
        account_id, event_id, device_id, device_type, vertical, event_time,
        lag(event_time) over (partition by account_id order by event_time, event_id) as prev_time,
        lag(device_id) over (partition by account_id order by event_time, event_id) as prev_device
    from {{ ref('stg_member_events') }}
),
marked as (
    select *,
        case when prev_time is null
                  or event_time - prev_time > to_minutes({{ var('journey_gap_minutes') }}::bigint)
             then 1 else 0 end as new_journey,
        case when prev_device is not null and prev_device <> device_id then 1 else 0 end as device_switch
    from ordered
),
numbered as (
    select *, sum(new_journey) over (partition by account_id order by event_time, event_id
                                     rows between unbounded preceding and current row) as journey_seq
    from marked
)
select
    account_id,
    journey_seq,
    min(event_time) as started_at,
    max(event_time) as ended_at,
    count(*) as events,
    count(distinct device_id) as devices,
    -- switches inside the journey (the first event of a journey never counts as a switch)
    sum(case when new_journey = 0 then device_switch else 0 end) as device_switches,
    string_agg(distinct vertical, ',' order by vertical) as verticals,
    string_agg(distinct device_type, ',' order by device_type) as device_types,
    count(distinct device_id) >= 2 as is_cross_device
from numbered
group by account_id, journey_seq
