"""The one handler every benchmark app serves at ``GET /item``: a small JSON object, as a
task read would return, built once (the handler costs the same behind every guard)."""

ITEM = {
    "id": "6f1c2a7e-3b7d-4c59-9a55-0e4d1f3b2c10",
    "title": "Write the quarterly report",
    "status": "todo",
    "tags": ["work", "q4"],
}
