-- Daily active accounts per vertical (streaming = playback, gaming = games), by UTC event day.
select
    cast(event_time as date) as activity_date,
    vertical,
    count(distinct account_id) as active_accounts,
    count(distinct profile_id) as active_profiles,
    count(*) as events
from {{ ref('stg_member_events') }}
where vertical in ('streaming', 'gaming')
group by 1, 2
