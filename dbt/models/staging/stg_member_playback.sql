-- Playback events (vertical "streaming"). graph_key: the started_watching edge profile -> title.
{{ stg_member_event('member_playback', 'streaming', "profile_id || '|' || title_id") }}
