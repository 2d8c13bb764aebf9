-- Device churn per account, from the graph history (logins, including those whose edges have expired
-- from the live graph): devices ever used, devices active in the last 30 days of the history, devices
-- not seen since (churned), and devices first seen in those 30 days (new).
{{ config(enabled=var('rdg_history', false)) }}
with logins as (
    select origin as account_id, other as device_id, epoch_ms(updated_at) as login_at
    from {{ source('history', 'edge_logged_in_from') }}
    where direction = 'out'
),
horizon as (
    select max(login_at) as as_of, max(login_at) - interval 30 day as since from logins
),
devices as (
    select account_id, device_id, min(login_at) as first_seen, max(login_at) as last_seen
    from logins
    group by account_id, device_id
)
select
    d.account_id,
    count(*) as devices_ever,
    count(*) filter (where d.last_seen >= h.since) as devices_active_30d,
    count(*) filter (where d.last_seen < h.since) as devices_churned,
    count(*) filter (where d.first_seen >= h.since) as devices_new_30d,
    round(count(*) filter (where d.last_seen < h.since) / count(*), 4) as churn_ratio,
    max(d.last_seen) as last_login_at,
    any_value(h.as_of) as as_of
from devices d cross join horizon h
group by d.account_id
