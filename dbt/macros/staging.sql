{# The columns every member-event staging model shares: one archived record, typed, labelled with its
   vertical and source topic, plus graph_key (the node/edge the streaming dedup window merges on). #}
{% macro stg_member_event(source_table, vertical, graph_key) %}
select
    event_id,
    cast(event_time as timestamptz) as event_time,
    account_id,
    profile_id,
    device_id,
    cast(device_type as varchar) as device_type,
    '{{ vertical }}' as vertical,
    'member.{{ source_table | replace("member_", "") }}' as topic,
    cast(kafka_ts as timestamptz) as kafka_ts,
    {{ graph_key }} as graph_key
from {{ source('archive', source_table) }}
{% endmacro %}
