"""Background work: what runs beside the doors, reading and settling the ledger.

| Procfile | module | does |
| --- | --- | --- |
| `worker:` | `reconcile.py` | poll providers, time out overdue jobs, send alerts (`alerts.py`) |
"""
