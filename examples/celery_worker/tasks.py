"""Celery tasks that courier's outbox relay sends (Celery protocol v2 messages over RabbitMQ).

courier publishes, for each event type mapped in `[outbox.celery]`, a task message whose id is stable per event
(`courier-<sequence>`). Delivery is at least once: after a crash courier may send the same event again, with the
same id. The task records its effect only once per id (the `seen` table's primary key), so a redelivery is
harmless.
"""

import os
import sqlite3

from celery import Celery

app = Celery("courier_example", broker=os.environ.get("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//"))
app.conf.task_default_queue = os.environ.get("CELERY_QUEUE", "celery")
app.conf.worker_hijack_root_logger = False

RECEIPTS = os.environ.get("RECEIPTS_FILE", "receipts.txt")


@app.task(name="courier.tasks.authorization_captured", bind=True)
def authorization_captured(self, authorization_id, amount, currency, sequence=None, account_id=None):
    # The dedupe record and the receipt line commit together: the line is written while the row is uncommitted,
    # and a crash before the commit leaves neither (a torn last line at worst, which the next run would rewrite).
    with sqlite3.connect(RECEIPTS + ".seen.db") as db:
        db.execute("CREATE TABLE IF NOT EXISTS seen (task_id TEXT PRIMARY KEY)")
        if db.execute("INSERT OR IGNORE INTO seen (task_id) VALUES (?)", (self.request.id,)).rowcount == 0:
            return "duplicate"
        with open(RECEIPTS, "a", encoding="utf-8") as receipts:
            receipts.write(f"{self.request.id} {authorization_id} captured {amount} {currency} seq={sequence}\n")
    return "recorded"
