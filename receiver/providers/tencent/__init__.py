"""Tencent Cloud VOD: one sender (`vod`) with two body formats, the legacy v2 (`v2`) and API
3.0 (`v3_tasks`, driven by the table in `v3_table`); task flows (`procedure`) and the task
vocabulary both share (`tasks`)."""
