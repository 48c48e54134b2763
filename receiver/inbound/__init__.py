"""The inbound doors: every way a provider notice enters the ledger.

| door | module | acknowledges with |
| --- | --- | --- |
| HTTP callbacks (`/hooks/<vendor>/<service>`) | `hooks.py` | `200` after the commit |
| Alibaba MNS queues (`consume-mns`, Procfile `mns:`) | `mns.py` | delete after the commit |
| Tencent reliable mode (`pull-tencent`, `tencent:`) | `tencent_pull.py` | confirm after commit |

`batch.py` is what the queue consumers share: record a batch in one ledger transaction,
quarantine what does not parse, acknowledge only what is committed.
"""
