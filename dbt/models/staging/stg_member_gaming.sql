-- Game events (vertical "gaming"). graph_key: the plays edge profile -> game.
{{ stg_member_event('member_gaming', 'gaming', "profile_id || '|' || game_id") }}
