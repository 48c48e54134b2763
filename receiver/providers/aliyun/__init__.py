"""Alibaba Cloud senders: ApsaraVideo VOD events (`vod`, its event table in `vod_events`),
MPS job callbacks (`mps`), and the MNS message bodies that carry either (`mns`)."""
