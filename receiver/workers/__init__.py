"""Long-running workers, one per Procfile line; each pulls work in and records it in the ledger.

| Procfile | module | does |
| --- | --- | --- |
| `mns:` | `mns.py` | consume Alibaba MNS queues (VOD events, MPS notices) |
| `tencent:` | `tencent_pull.py` | pull and confirm Tencent VOD reliable-mode events |
| `worker:` | `reconcile.py` | poll providers, time out overdue jobs, send alerts (`alerts.py`) |

`batch.py` is what the queue consumers share: record a batch in one ledger transaction,
quarantine what does not parse, acknowledge only what is committed.
"""
