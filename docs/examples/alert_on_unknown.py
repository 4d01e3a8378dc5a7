"""An Automation that alerts when a batch leaves anyone `unknown` (maybe texted, not resent).

Run once against your Prefect server after saving a notification block (Slack, email, ...):
`python docs/examples/alert_on_unknown.py my-slack-block`.
"""

from __future__ import annotations

import sys

from prefect.automations import Automation
from prefect.blocks.core import Block
from prefect.events.actions import SendNotification
from prefect.events.schemas.automations import EventTrigger, Posture


def alert_on_unknown(notification_block: str) -> Automation:
    """Create the Automation: each `intercom.batch.unknown` event sends a notification naming the batch."""
    block = Block.load(notification_block)
    return Automation(
        name="intercom-batch-left-someone-unknown",
        description="A prefect-intercom batch left people `unknown`: check them before any re-send.",
        trigger=EventTrigger(expect={"intercom.batch.unknown"}, posture=Posture.Reactive, threshold=1),
        actions=[
            SendNotification(
                block_document_id=block._block_document_id,
                subject="Intercom batch {{ event.payload.batch_key }}: unknown outcomes",
                body="{{ event.payload.counts.unknown }} people may or may not have been texted "
                "(batch {{ event.payload.batch_key }}, run {{ event.payload.run }}).",
            )
        ],
    ).create()


if __name__ == "__main__":
    print(alert_on_unknown(sys.argv[1]))
