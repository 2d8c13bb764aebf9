-- Logins (vertical "login"). graph_key: the logged_in_from edge account -> device.
{{ stg_member_event('member_login', 'login', "account_id || '|' || device_id") }}
